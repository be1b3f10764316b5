"""The issuer pipeline with a software key in place of the HSM (the HSM path runs in
tests/integration). Every output is checked by pycose and taken apart without our decoder."""

from __future__ import annotations

import hashlib
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from signer.domain import Alg
from signer.hcert.encode import HcertEncoder, bstr_head, claims_bytes, claims_head
from signer.hcert.verify import TrustStore, verify_hc1
from tests.independent import cose_bytes, hc1_claims, hc1_verifies, untag
from tests.unit.hcert.conftest import DCC, NOW, Issuer, ts


def software_signer(issuer: Issuer) -> Any:
    """Sign a SHA-256 digest the way the HSM does: raw r‖s for ES256, PSS-SHA256/32 for PS256."""
    key = issuer.key

    def sign_digest(digest: bytes) -> bytes:
        assert len(digest) == 32
        if isinstance(key, rsa.RSAPrivateKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return key.sign(digest, pss, Prehashed(hashes.SHA256()))
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign_digest


@pytest.fixture(params=["es256", "ps256"])
def signing(request: pytest.FixtureRequest) -> tuple[Issuer, HcertEncoder, Alg]:
    issuer: Issuer = request.getfixturevalue(request.param)
    alg = Alg.ES256 if request.param == "es256" else Alg.PS256
    return issuer, HcertEncoder(alg, issuer.kid, software_signer(issuer)), alg


def test_output_verifies_independently_and_round_trips(
    signing: tuple[Issuer, HcertEncoder, Alg],
) -> None:
    issuer, encoder, _alg = signing
    iat, exp = ts(NOW), ts(NOW) + 365 * 86400
    hc1 = encoder.encode(DCC, "VN", iat, exp)

    assert hc1.startswith("HC1:")
    assert hc1_verifies(hc1, issuer.cert)
    assert hc1_claims(hc1) == {1: "VN", 6: iat, 4: exp, -260: {1: DCC}}
    result = verify_hc1(hc1, TrustStore([issuer.trusted]), at=NOW)
    assert result.ok, result.message
    assert result.decoded is not None and result.decoded.dcc == DCC


def test_cose_structure_is_exactly_what_hcert_prescribes(
    signing: tuple[Issuer, HcertEncoder, Alg],
) -> None:
    issuer, encoder, alg = signing
    cose = cose_bytes(encoder.encode(DCC, "VN", ts(NOW), ts(NOW) + 86400))
    assert cose[0] == 0xD2  # tag 18 (HCERT.md §3)
    protected, unprotected, _payload, signature = cbor2.loads(untag(cose))
    assert cbor2.loads(protected) == {1: alg.cose_id, 4: issuer.kid}
    assert unprotected == {}
    assert len(signature) == (64 if alg is Alg.ES256 else 256)


def test_signature_covers_the_sig_structure_digest() -> None:
    seen: list[bytes] = []

    def record(digest: bytes) -> bytes:
        seen.append(digest)
        return b"\x00" * 64

    encoder = HcertEncoder(Alg.ES256, b"\x01" * 8, record)
    claims = cbor2.dumps({1: "VN"})
    encoder.encode({"x": 1}, "VN", 1, 2)
    expected = cbor2.dumps(["Signature1", cbor2.dumps({1: -7, 4: b"\x01" * 8}), b"", claims])
    assert encoder.to_be_signed(claims) == expected
    assert len(seen) == 1 and len(seen[0]) == 32
    claims_signed = cbor2.dumps({1: "VN", 6: 1, 4: 2, -260: {1: {"x": 1}}})
    assert seen[0] == hashlib.sha256(encoder.to_be_signed(claims_signed)).digest()


@pytest.mark.parametrize("length", [0, 23, 24, 255, 256, 65535, 65536])
def test_bstr_head_matches_cbor2(length: int) -> None:
    data = b"\x00" * length
    assert bstr_head(length) + data == cbor2.dumps(data)


@pytest.mark.parametrize(
    ("iss", "iat", "exp"), [("VN", 0, 1), ("VN", 1_795_000_000, 1_826_536_000), ("", 23, 2**40)]
)
def test_claims_head_plus_dcc_is_the_whole_claims_map(iss: str, iat: int, exp: int) -> None:
    whole = cbor2.dumps({1: iss, 6: iat, 4: exp, -260: {1: DCC}})
    assert claims_head(iss, iat, exp) + cbor2.dumps(DCC) == whole
    assert cbor2.loads(claims_bytes(DCC, iss, iat, exp)) == {1: iss, 6: iat, 4: exp, -260: {1: DCC}}
