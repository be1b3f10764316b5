"""The DCC as a plain JSON value: what the Verify response and ``signer verify`` may carry.

A signed DCC is CBOR (HCERT.md §2) and may hold what JSON cannot: non-text map keys, integers
beyond 64 bits, NaN, byte strings, ``undefined`` (TD I-CO5 forbids it), unknown tags. Such an
item is refused here, in the domain layer, with a path to the offending value, so that no later
conversion (protobuf, orjson, json) can fail on it (issue 10 §2).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

#: JSON numbers an int64 can carry (the protobuf side and orjson both stop there).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class NotJsonError(ValueError):
    """A value of the DCC has no JSON form; ``path`` is a JSON pointer (RFC 6901) to it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '/'}: {message}")
        self.path = path


def json_value(value: Any, path: str = "") -> Any:
    """``value`` with tuples as lists and CBOR date-times (tags 0/1) as RFC 3339 text.

    Only the JSON types remain: dict with text keys, list, str, int within int64, finite
    float, bool, None. Nesting depth is already bounded by the CBOR decoder.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise NotJsonError(path, "integer outside the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJsonError(path, f"{value} is not a JSON number")
        return value
    if isinstance(value, list | tuple):
        return [json_value(item, f"{path}/{i}") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJsonError(path, f"map key {type(key).__name__} is not text")
            out[key] = json_value(item, f"{path}/{_escape(key)}")
        return out
    if isinstance(value, dt.datetime):  # tag 0 (``sc`` SHOULD use it) or tag 1
        return value.isoformat().replace("+00:00", "Z")
    raise NotJsonError(path, f"CBOR {type(value).__name__} has no JSON form")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
