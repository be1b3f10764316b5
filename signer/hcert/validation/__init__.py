"""Validation of one DCC payload before it reaches the HSM (PAYLOAD.md, DCC schema 1.3.x).

``validate_payload`` reports every fault of an item as :class:`signer.domain.ItemError` values
(stable ``code``, JSON-pointer ``path``, a sentence for the data clerk) and returns the payload
to sign: NFC-normalised, with ``fnt``/``gnt`` derived from ``fn``/``gn`` (ICAO 9303) when missing.
``ERROR_CODES`` lists every code; ``docs/errors.md`` is the same table for people.
"""

from __future__ import annotations

from signer.hcert.validation._codes import ERROR_CODES
from signer.hcert.validation._names import transliterate
from signer.hcert.validation._policy import IMPLEMENTED_VERSIONS, ValidationPolicy
from signer.hcert.validation._uvci import find_duplicate_uvcis, uvci_checksum
from signer.hcert.validation._validate import ValidatedPayload, validate_payload

__all__ = [
    "ERROR_CODES",
    "IMPLEMENTED_VERSIONS",
    "ValidatedPayload",
    "ValidationPolicy",
    "find_duplicate_uvcis",
    "transliterate",
    "uvci_checksum",
    "validate_payload",
]
