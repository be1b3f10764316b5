"""The three DCC revocation hashes of a certificate (HCERT.md §9, the DCC gateway's definitions).

Each is the first 16 bytes of a SHA-256: ``UCI`` over the UVCI, ``COUNTRYCODEUCI`` over the CWT
``iss`` followed by the UVCI, and ``SIGNATURE`` over the COSE signature — for ES256 over its
first half (r) only, for PS256 over all of it.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Final, NamedTuple

from signer.domain import Alg

HASH_BYTES: Final = 16


class HashType(StrEnum):
    """The gateway's names for the three hashes (its ``RevocationHashTypeDto``)."""

    SIGNATURE = "SIGNATURE"
    UCI = "UCI"
    COUNTRYCODEUCI = "COUNTRYCODEUCI"


class RevocationHashes(NamedTuple):
    uci: bytes | None  # None when the certificate carries no UVCI
    country_uci: bytes | None
    signature: bytes


def truncated_sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:HASH_BYTES]


def signature_hash(signature: bytes, alg: Alg | None) -> bytes:
    """``SIGNATURE``: r of an ES256 signature (r ‖ s, equal halves), or the whole signature."""
    signed = signature[: len(signature) // 2] if alg is Alg.ES256 else signature
    return truncated_sha256(signed)


def revocation_hashes(
    uvci: str | None, iss: str, signature: bytes, alg: Alg | None
) -> RevocationHashes:
    if uvci is None:
        return RevocationHashes(None, None, signature_hash(signature, alg))
    return RevocationHashes(
        truncated_sha256(uvci.encode()),
        truncated_sha256((iss + uvci).encode()),
        signature_hash(signature, alg),
    )
