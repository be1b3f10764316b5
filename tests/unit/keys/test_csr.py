"""PKCS#10 requests signed inside the HSM, checked by ``cryptography`` (not by our DER code)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from hsm import HsmToken
from signer.domain import Alg, CertType
from signer.errors import KeyStateError
from signer.keys.csr import integer, oid, parse_subject
from signer.keys.lifecycle import KeyManager
from tests.unit.keys.conftest import unique

SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


@pytest.mark.parametrize(
    ("alg", "key_type"), [(Alg.ES256, ec.EllipticCurvePublicKey), (Alg.PS256, rsa.RSAPublicKey)]
)
def test_csr_is_signed_by_the_hsm_key_with_the_requested_subject(
    hsm_token: HsmToken,
    make_manager: Callable[..., KeyManager],
    alg: Alg,
    key_type: type,
) -> None:
    manager = make_manager()
    label = unique(f"csr-{alg.value}")
    record = manager.generate(label, alg, frozenset(CertType))
    der = manager.csr(label, "CN=VN DSC 2025-2,O=Ministry of Health\\, Viet Nam,OU=DCC,C=VN")

    csr = x509.load_der_x509_csr(der)
    assert csr.is_signature_valid
    expected_hash = "sha256"
    assert csr.signature_hash_algorithm is not None
    assert csr.signature_hash_algorithm.name == expected_hash
    if alg is Alg.PS256:  # RSASSA-PSS, the one mechanism the key allows (issue 8 §9)
        assert csr.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSASSA_PSS
        pss = csr.signature_algorithm_parameters
        assert isinstance(pss, padding.PSS)
        assert isinstance(pss.mgf, padding.MGF1)
        assert isinstance(pss.mgf._algorithm, hashes.SHA256)
        assert pss._salt_length == 32
    assert isinstance(csr.public_key(), key_type)
    token_spki = serialization.load_der_public_key(
        hsm_token.public_key_der(record.key_id)
    ).public_bytes(serialization.Encoding.DER, SPKI)
    assert csr.public_key().public_bytes(serialization.Encoding.DER, SPKI) == token_spki
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "VN DSC 2025-2"
    assert (
        csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        == "Ministry of Health, Viet Nam"
    )
    assert csr.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "VN"


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("O=Ministry,C=VN", "CN and C"),
        ("CN=x", "CN and C"),
        ("CN=x,C=Vietnam", "alpha-2"),
        ("CN=x,E=a@b,C=VN", "KEY=value"),
        ("CN=x,C", "KEY=value"),
    ],
)
def test_bad_subjects_say_what_is_expected(subject: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_subject(subject)


def test_csr_for_a_missing_key_is_refused(make_manager: Callable[..., KeyManager]) -> None:
    with pytest.raises(KeyStateError, match="no key labelled"):
        make_manager().csr("csr-nonexistent", "CN=x,C=VN")


def test_der_primitives_match_known_encodings() -> None:
    assert oid("1.2.840.10045.4.3.2") == bytes.fromhex("06082a8648ce3d040302")
    assert oid("1.2.840.113549.1.1.11") == bytes.fromhex("06092a864886f70d01010b")
    assert integer(0) == b"\x02\x01\x00"
    assert integer(128) == b"\x02\x02\x00\x80"
