"""Build test DSCs and ``HC1:`` strings by hand: cbor2 + zlib + base45, no project encoder.

The certificates are self-signed with software keys; the COSE bytes are assembled here exactly
as HCERT.md §1 describes, so the decoder and verifier are tested against an independent issuer,
and :func:`tests.independent.pycose_verifies` checks the same bytes with a third
implementation.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from signer.hcert import base45
from signer.hcert.verify import TrustedDsc, TrustStore
from tests.independent import pycose_verifies, untag

__all__ = ["pycose_verifies", "untag"]  # re-exported for the tests of this package

#: The fixed "now" of every test; pass it as ``at``.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ES256, PS256, ES384 = -7, -37, -35

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
Tagging = Literal["18", "61+18", "none"]

DCC: dict[str, Any] = {
    "ver": "1.3.0",
    "nam": {"fn": "Musterfrau", "fnt": "MUSTERFRAU", "gn": "Erika", "gnt": "ERIKA"},
    "dob": "1964-08-12",
    "v": [
        {
            "tg": "840539006",
            "vp": "1119349007",
            "mp": "EU/1/20/1528",
            "ma": "ORG-100030215",
            "dn": 2,
            "sd": 2,
            "dt": "2021-05-29",
            "co": "AT",
            "is": "Ministry of Health, Austria",
            "ci": "URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813#B",
        }
    ],
}


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def make_dsc(
    key: PrivateKey,
    *,
    not_before: datetime = NOW - timedelta(days=365),
    not_after: datetime = NOW + timedelta(days=365),
    cn: str = "Test DSC",
    country: str = "XX",
    eku: list[str] | None = None,
) -> x509.Certificate:
    """A self-signed DSC with subject CN + C and keyUsage digitalSignature (HCERT.md §7), and
    with ``eku`` an extendedKeyUsage of those OIDs (§7: the DCC types it may sign)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(usage, critical=True)
    )
    if eku is not None:
        oids = [x509.ObjectIdentifier(oid) for oid in eku]
        builder = builder.add_extension(x509.ExtendedKeyUsage(oids), critical=False)
    return builder.sign(key, hashes.SHA256())


def cose_signature(key: PrivateKey, data: bytes) -> bytes:
    """ES*: raw r || s, each padded to the curve size; RSA: PSS-SHA256, salt 32 (HCERT.md §5)."""
    if isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        return key.sign(data, pss, hashes.SHA256())
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def claims(
    *,
    iss: str = "XX",
    iat: int | None = None,
    exp: int | None = None,
    dcc: Any = None,
) -> dict[int, Any]:
    """CWT claims {1: iss, 6: iat, 4: exp, -260: {1: DCC}} (HCERT.md §2)."""
    return {
        1: iss,
        6: ts(NOW - timedelta(days=1)) if iat is None else iat,
        4: ts(NOW + timedelta(days=30)) if exp is None else exp,
        -260: {1: DCC if dcc is None else dcc},
    }


def sig_structure(protected_bstr: bytes, payload_bstr: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected_bstr, b"", payload_bstr])


def tag(array: list[Any], tagging: Tagging) -> bytes:
    if tagging == "none":
        return cbor2.dumps(array)
    if tagging == "18":
        return cbor2.dumps(cbor2.CBORTag(18, array))
    return cbor2.dumps(cbor2.CBORTag(61, cbor2.CBORTag(18, array)))


def to_hc1(cose: bytes) -> str:
    return "HC1:" + base45.encode(zlib.compress(cose, 9))


@dataclass(frozen=True)
class Issuer:
    """A software key, its self-signed DSC and the COSE alg it signs with."""

    key: PrivateKey
    cert: x509.Certificate
    alg_id: int

    @property
    def kid(self) -> bytes:
        return TrustedDsc.from_certificate(self.cert).kid

    @property
    def trusted(self) -> TrustedDsc:
        return TrustedDsc.from_certificate(self.cert)

    def cose(
        self,
        *,
        payload: dict[Any, Any] | bytes | None = None,
        protected: dict[Any, Any] | None = None,
        unprotected: dict[Any, Any] | None = None,
        tagging: Tagging = "18",
        signature: bytes | None = None,
    ) -> bytes:
        """COSE_Sign1 bytes; by default protected {1: alg, 4: kid}, unprotected {}, tag 18."""
        if protected is None:
            protected = {1: self.alg_id, 4: self.kid}
        protected_bstr = cbor2.dumps(protected) if protected else b""
        if payload is None:
            payload = claims()
        payload_bstr = payload if isinstance(payload, bytes) else cbor2.dumps(payload)
        if signature is None:
            signature = cose_signature(self.key, sig_structure(protected_bstr, payload_bstr))
        return tag([protected_bstr, unprotected or {}, payload_bstr, signature], tagging)

    def hc1(self, **kwargs: Any) -> str:
        return to_hc1(self.cose(**kwargs))


def issuer(key: PrivateKey, alg_id: int, **dsc: Any) -> Issuer:
    return Issuer(key, make_dsc(key, **dsc), alg_id)


@pytest.fixture(scope="session")
def es256() -> Issuer:
    return issuer(ec.generate_private_key(ec.SECP256R1()), ES256, cn="ES256 DSC")


@pytest.fixture(scope="session")
def ps256() -> Issuer:
    return issuer(rsa.generate_private_key(65537, 2048), PS256, cn="PS256 DSC")


@pytest.fixture(scope="session")
def p384() -> Issuer:
    """ES256 declared, P-384 key: like vectors ES/401–403, which verifiers must reject (§5)."""
    return issuer(ec.generate_private_key(ec.SECP384R1()), ES256, cn="P-384 DSC")


@pytest.fixture(scope="session")
def trust(es256: Issuer, ps256: Issuer) -> TrustStore:
    return TrustStore([es256.trusted, ps256.trusted])
