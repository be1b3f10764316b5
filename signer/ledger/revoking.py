"""Revocations (issue 8 §5): which certificate an officer revoked, why, and their signature.

A revocation names one DCC revocation hash (HCERT.md §9): ``SIGNATURE`` revokes one
certificate, ``UCI`` every certificate with that UVCI (a re-issue keeps the UVCI, so it is
revoked too). It carries a reason, the officer's roster name and the time, and that officer's
Ed25519 signature over the canonical content (``signer.keys.officers.signed_bytes`` under
:data:`REVOCATION_DOMAIN`), so a row someone wrote into the database without an officer key
does not verify (``signer audit revocations`` refuses to export past one).

Which certificates a set of revocations covers, and which of a revoked certificate's hashes
may be published, is decided here alone: Reissue (``hc1_revoked``) and the export both call
:func:`revoked_by` and :func:`published_types` (docs/adr/0008-revocations.md).
"""

from __future__ import annotations

import base64
import binascii
import string
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any, Final

from signer.errors import RequestError
from signer.hcert.revocation import HashType
from signer.keys.officers import Approval, OfficerKey, Roster
from signer.ledger.records import Entry

REVOCATION_DOMAIN: Final = "hcert-signer/revocation/v1"
MAX_REASON: Final = 200  # characters: a sentence for the audit, not a case file

#: The broadest first: a certificate revoked by its UVCI is reported as such.
_MATCH_ORDER: Final = (HashType.UCI, HashType.COUNTRYCODEUCI, HashType.SIGNATURE)


@dataclass(frozen=True, slots=True)
class Revocation:
    hash_type: HashType
    hash: bytes
    reason: str
    officer: str  # the officer's name in the roster
    time_us: int
    signature: bytes  # the officer's Ed25519 signature over content()

    def content(self) -> dict[str, Any]:
        """What the officer signs: every field but the signature."""
        return {
            "v": 1,
            "hash_type": self.hash_type.value,
            "hash": base64.b64encode(self.hash).decode(),
            "reason": self.reason,
            "officer": self.officer,
            "time_us": self.time_us,
        }

    @classmethod
    def signed(
        cls, officer: OfficerKey, hash_type: HashType, hash: bytes, reason: str, time_us: int
    ) -> Revocation:
        check_reason(reason)
        unsigned = cls(hash_type, hash, reason, officer.name, time_us, b"")
        approval = officer.approve(REVOCATION_DOMAIN, unsigned.content())
        return replace(unsigned, signature=approval.signature)

    def verifies(self, roster: Roster) -> bool:
        """Whether a roster officer's signature over exactly this content holds."""
        approval = Approval(self.officer, self.signature)
        return roster.verify(REVOCATION_DOMAIN, self.content(), approval)

    def to_json(self) -> dict[str, Any]:
        return {**self.content(), "signature": base64.b64encode(self.signature).decode()}


def check_reason(reason: str) -> None:
    if not reason.strip() or len(reason) > MAX_REASON or not reason.isprintable():
        raise RequestError(
            f"--reason must be printable text of 1 to {MAX_REASON} characters (no personal data)"
        )


def parse_hash(text: str, length: int, option: str) -> bytes:
    """``length`` bytes written as hex or base64 (told apart by their length)."""
    try:
        if len(text) == 2 * length and all(c in string.hexdigits for c in text):
            value = bytes.fromhex(text)
        else:
            value = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        value = b""
    if len(value) != length:
        raise RequestError(
            f"{option} {text!r} is not {length} bytes in base64 or hex "
            f"({len(base64.b64encode(bytes(length)))} or {2 * length} characters)"
        )
    return value


def entry_hash(entry: Entry, hash_type: HashType) -> bytes | None:
    """The record's hash of this type; None for UCI types when the certificate has no UVCI."""
    if hash_type is HashType.SIGNATURE:
        return entry.signature
    return entry.uci if hash_type is HashType.UCI else entry.country_uci


def candidates(entry: Entry) -> list[tuple[HashType, bytes]]:
    """The (type, hash) pairs under which a revocation could name this certificate."""
    pairs = [(t, entry_hash(entry, t)) for t in _MATCH_ORDER]
    return [(t, h) for t, h in pairs if h is not None]


def revoked_by(entry: Entry, revoked: Collection[tuple[HashType, bytes]]) -> HashType | None:
    """The broadest hash type under which the certificate of ``entry`` is revoked, or None."""
    return next((t for t, h in candidates(entry) if (t, h) in revoked), None)


def published_types(by: HashType) -> tuple[HashType, ...]:
    """The hashes of a certificate revoked ``by`` one type that may go on a revocation list.

    A UVCI-wide revocation publishes all three; a revocation of one signature publishes only
    the SIGNATURE hash, since the certificate's UCI hashes would also revoke its re-issue.
    """
    if by is HashType.SIGNATURE:
        return (HashType.SIGNATURE,)
    return (HashType.SIGNATURE, HashType.UCI, HashType.COUNTRYCODEUCI)
