"""The issuer half of HCERT, byte exact (HCERT.md §1):

    claims {1: iss, 6: iat, 4: exp, -260: {1: DCC}}  ──CBOR──►  payload bstr
    Sig_structure = ["Signature1", protected, h'', payload]  ──SHA-256──►  digest  ──HSM──►  sig
    COSE_Sign1 = 18([protected, {}, payload, sig])  ──zlib──►  ──base45──►  "HC1:" …

Everything that depends only on the key (the protected header {1: alg, 4: kid} and the CBOR
framing around it) is encoded once per key, so the per-item work is one CBOR encode of the
claims, one hash, one signature, one compression and one base45 pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import cbor2
from zlib_ng import zlib_ng

from signer.domain import Alg
from signer.hcert import base45

HC1_PREFIX = "HC1:"
# zlib-ng at level 1 writes a standard zlib stream (RFC 1950, HCERT.md §6) in ~7 µs where
# stdlib zlib takes ~25 µs at any level, and the result is within 1 % of level 9's size: DCC
# CBOR is short unique text plus a random signature and barely compresses (measured on the
# benchmark payloads: 380 B in, 385–388 B out). docs/adr/0004-hot-path-encoding.md.
ZLIB_LEVEL = 1
# A 4 KiB window covers any HCERT the schema allows (strings ≤ 80 characters) and saves zlib-ng
# ~1.3 µs of set-up per certificate against the default 32 KiB; the stream is standard zlib,
# which every inflater reads whatever its window (RFC 1950 CINFO).
ZLIB_WBITS = 12

CLAIM_ISS, CLAIM_IAT, CLAIM_EXP, CLAIM_HCERT = 1, 6, 4, -260
HCERT_EU_DCC_V1 = 1
COSE_HEADER_ALG, COSE_HEADER_KID = 1, 4
COSE_SIGN1_TAG = 18


def bstr_head(length: int) -> bytes:
    """The CBOR head of a byte string of ``length`` bytes (RFC 8949 §3, major type 2)."""
    if length < 24:
        return bytes((0x40 | length,))
    if length < 0x100:
        return bytes((0x58, length))
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    return b"\x5a" + length.to_bytes(4, "big")


def protected_header(alg: Alg, kid: bytes) -> bytes:
    """``{1: alg, 4: kid}`` as CBOR; the unprotected header stays empty (HCERT.md §3)."""
    return cbor2.dumps({COSE_HEADER_ALG: alg.cose_id, COSE_HEADER_KID: kid})


def claims_head(iss: str, iat: int, exp: int) -> bytes:
    """The CBOR of the claims map up to, not including, the DCC: ``claims_head + CBOR(dcc)`` is
    ``{1: iss, 6: iat, 4: exp, -260: {1: dcc}}``. The DCC is the map's last value, so the head is
    the encoding with a placeholder DCC (``null``, one byte) minus that byte. A batch encodes it
    once per certificate type instead of once per item."""
    placeholder = cbor2.dumps(
        {CLAIM_ISS: iss, CLAIM_IAT: iat, CLAIM_EXP: exp, CLAIM_HCERT: {HCERT_EU_DCC_V1: None}}
    )
    assert placeholder[-1:] == b"\xf6"  # CBOR null
    return placeholder[:-1]


def claims_bytes(dcc: Any, iss: str, iat: int, exp: int) -> bytes:
    return claims_head(iss, iat, exp) + cbor2.dumps(dcc)


class HcertEncoder:
    """Encodes and signs HCERTs for one key; ``sign_digest`` is the HSM call (SHA-256 in)."""

    __slots__ = ("_cose_head", "_sig_head", "_sign_digest", "alg", "kid")

    def __init__(self, alg: Alg, kid: bytes, sign_digest: Callable[[bytes], bytes]) -> None:
        self.alg = alg
        self.kid = kid
        self._sign_digest = sign_digest
        protected = protected_header(alg, kid)
        protected_bstr = bstr_head(len(protected)) + protected
        # Sig_structure: array(4), "Signature1", protected bstr, external_aad h'' (RFC 8152 §4.4)
        self._sig_head = b"\x84" + cbor2.dumps("Signature1") + protected_bstr + b"\x40"
        # COSE_Sign1: tag 18, array(4), protected bstr, unprotected {} (HCERT.md §3)
        self._cose_head = b"\xd2\x84" + protected_bstr + b"\xa0"

    def to_be_signed(self, claims: bytes) -> bytes:
        """The Sig_structure whose SHA-256 the HSM signs."""
        return self._sig_head + bstr_head(len(claims)) + claims

    def cose_sign1(self, claims: bytes, signature: bytes) -> bytes:
        return (
            self._cose_head
            + bstr_head(len(claims))
            + claims
            + bstr_head(len(signature))
            + signature
        )

    def digest(self, claims: bytes) -> bytes:
        """The SHA-256 of the Sig_structure of ``claims``: what the HSM signs."""
        return hashlib.sha256(self.to_be_signed(claims)).digest()

    def compressed(self, claims: bytes, signature: bytes) -> bytes:
        """The zlib-compressed COSE_Sign1 of ``claims`` and their signature: everything up to
        base45, which batches run over all their items at once (:func:`base45.encode_many`)."""
        return zlib_ng.compress(self.cose_sign1(claims, signature), ZLIB_LEVEL, ZLIB_WBITS)

    def sign_compressed(self, dcc: Any, head: bytes) -> tuple[bytes, bytes]:
        """:meth:`compressed` of the claims ``head + CBOR(dcc)`` (:func:`claims_head`), and the
        signature (for the ledger): one item from CBOR to zlib."""
        claims = head + cbor2.dumps(dcc)
        signature = self._sign_digest(self.digest(claims))
        return self.compressed(claims, signature), signature

    def encode(self, dcc: Any, iss: str, iat: int, exp: int) -> str:
        """One ``HC1:`` string."""
        compressed, _ = self.sign_compressed(dcc, claims_head(iss, iat, exp))
        return HC1_PREFIX + base45.encode(compressed)
