"""State of one ``validate_payload`` call: the policy, the clock, and the findings so far.

Checks append to ``errors``/``warnings`` instead of raising, so one pass reports every fault of
an item (issue requirement: "ALL errors of the item, not just the first").
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any, Final

from signer.domain import ItemError
from signer.hcert.validation import _codes as codes
from signer.hcert.validation._dates import clock
from signer.hcert.validation._policy import ValidationPolicy

#: Unknown fields are copied (the schema has no ``additionalProperties: false``); nesting deeper
#: than this is refused rather than risking the recursion limit on hostile input.
MAX_UNKNOWN_DEPTH: Final = 32


class Run:
    """Findings and per-call constants of one validation."""

    __slots__ = ("errors", "latest", "now", "now_seconds", "policy", "warnings")

    def __init__(self, policy: ValidationPolicy, now: datetime) -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware (e.g. datetime.now(timezone.utc))")
        self.policy = policy
        self.now = now
        self.now_seconds, self.latest = clock(now, policy.clock_skew_seconds)
        self.errors: list[ItemError] = []
        self.warnings: list[ItemError] = []

    def error(self, code: str, path: str, message: str) -> None:
        self.errors.append(ItemError(code, path, message))

    def warn(self, code: str, path: str, message: str) -> None:
        self.warnings.append(ItemError(code, path, message))

    def deprecated(self, path: str, message: str) -> None:
        """A deprecated value-set code: error or warning as the policy says."""
        if self.policy.deprecated_codes == "refuse":
            self.error(codes.DEPRECATED_CODE, path, message)
        else:
            self.warn(codes.DEPRECATED_CODE, path, message)

    def wrong_type(self, path: str, what: str, expected: str, value: object) -> None:
        self.error(codes.TYPE, path, f"{what} must be {expected}, found {describe(value)}")

    def copy_unknown(self, value: Any, path: str, depth: int = 0) -> Any:
        """NFC-normalised deep copy of a field this schema version does not define."""
        if isinstance(value, str):
            return nfc(value)
        if depth >= MAX_UNKNOWN_DEPTH:
            if isinstance(value, dict | list):
                self.error(
                    codes.TYPE,
                    path,
                    f"this field is nested more than {MAX_UNKNOWN_DEPTH} levels deep; "
                    "a DCC has no such structure",
                )
            return value
        if isinstance(value, dict):
            return {
                nfc(k) if isinstance(k, str) else k: self.copy_unknown(
                    v, f"{path}/{pointer_token(k)}", depth + 1
                )
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.copy_unknown(v, f"{path}/{i}", depth + 1) for i, v in enumerate(value)]
        return value


def nfc(text: str) -> str:
    """NFC form of ``text``; ASCII (the common case) is returned as is without a lookup."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def pointer_token(key: object) -> str:
    """One RFC 6901 reference token: ``~`` → ``~0``, ``/`` → ``~1``."""
    return str(key).replace("~", "~0").replace("/", "~1")


def describe(value: object) -> str:
    """A JSON value as a clerk would name it in a message: its JSON type and a short preview."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, str):
        return f'string "{value[:40]}"' + ("…" if len(value) > 40 else "")
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
