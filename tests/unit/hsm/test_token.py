"""The hsm/ layer on a real SoftHSM token: key template, attribute checks, digest signing."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given
from hypothesis import strategies as st
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag
from pkcs11.util.ec import encode_named_curve_parameters

from hsm import (
    HsmError,
    HsmToken,
    KeyAlgorithm,
    SoftHsm,
    WeakKeyError,
    check_private_key_attributes,
)
from hsm._mechanisms import pack_mechanisms, unpack_mechanisms
from hsm._softhsm import init_token_command
from hsm.testing import generate_legacy_key
from signer.domain import Alg
from signer.hcert.verify import signature_matches
from signer.keys.devca import DevCsca
from tests.conftest import require_softhsm

#: What a DSC key may do, spelled out here rather than taken from hsm/.
MECHANISMS = {
    KeyAlgorithm.EC_P256: frozenset({Mechanism.ECDSA}),
    KeyAlgorithm.RSA_2048: frozenset({Mechanism.RSA_PKCS_PSS}),
}
# RFC 8017 §9.2 note 1: DER of DigestInfo{sha256, NULL}, the prefix of a raw PKCS#1 v1.5 input.
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


@pytest.mark.parametrize(
    ("algorithm", "alg"), [(KeyAlgorithm.EC_P256, Alg.ES256), (KeyAlgorithm.RSA_2048, Alg.PS256)]
)
def test_generated_key_is_sign_only_and_signs_verifiably(
    hsm_token: HsmToken, dev_csca: DevCsca, algorithm: KeyAlgorithm, alg: Alg
) -> None:
    label = f"gen-{algorithm.value}"
    key = hsm_token.generate_key(algorithm, label, secrets.token_bytes(16))
    assert check_private_key_attributes(key.handle, algorithm) == ()  # raises when too weak
    # Exactly the signing path's mechanism, read back from the token (issue 8 §9).
    assert key.handle[Attribute.ALLOWED_MECHANISMS] == MECHANISMS[algorithm]
    for attribute, wanted in {
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.NEVER_EXTRACTABLE: True,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
    }.items():
        assert bool(key.handle[attribute]) is wanted, attribute

    certificate = dev_csca.issue_dsc(
        hsm_token.public_key_der(key.key_id),
        label,
        "VN",
        *_validity(),
    )
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey if alg is Alg.ES256 else rsa.RSAPublicKey)
    message = b"hcert"
    signature = key.sign_digest(hashlib.sha256(message).digest())
    assert len(signature) == (64 if alg is Alg.ES256 else 256)
    assert signature_matches(alg, certificate, signature, message)
    assert not signature_matches(alg, certificate, signature, b"other")


def test_weak_key_is_refused(hsm_token: HsmToken) -> None:
    session: pkcs11.Session = hsm_token._session
    params = session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters("1.2.840.10045.3.1.7")},
        local=True,
    )
    _, private = params.generate_keypair(
        store=True,
        label="weak",
        id=b"weak",
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY | MechanismFlag.DERIVE,
        private_template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    with pytest.raises(WeakKeyError) as refused:
        check_private_key_attributes(private, KeyAlgorithm.EC_P256)
    message = str(refused.value)
    for problem in (
        "SENSITIVE=False",
        "EXTRACTABLE=True",
        "NEVER_EXTRACTABLE=False",
        "DERIVE=True",
        "ALLOWED_MECHANISMS empty",
    ):
        assert problem in message


def test_a_key_checked_while_its_session_goes_away_is_the_hsms_fault_not_a_weak_key(
    hsm_token: HsmToken,
) -> None:
    """Issue 9 §4: attributes unreadable because the session (or the device) went away are an
    HSM fault the caller retries or answers UNAVAILABLE; read as "unreadable", they made a sound
    key look too weak to sign, and its certificates came back ``no_key``."""
    key = hsm_token.generate_key(KeyAlgorithm.EC_P256, "checked-mid-outage", b"outage")
    assert check_private_key_attributes(key.handle, KeyAlgorithm.EC_P256) == ()
    hsm_token.close()
    try:
        with pytest.raises(HsmError) as failed:
            check_private_key_attributes(key.handle, KeyAlgorithm.EC_P256)
        assert not isinstance(failed.value, WeakKeyError)
        assert failed.value.scope == "session", failed.value
    finally:
        hsm_token.reopen()
    # On a new session (found again: handles belong to their session) the key is sound.
    (found,) = [k for k in hsm_token.signing_keys() if k.label == "checked-mid-outage"]
    assert check_private_key_attributes(found.handle, KeyAlgorithm.EC_P256) == ()


def test_duplicate_label_is_refused(hsm_token: HsmToken) -> None:
    hsm_token.generate_key(KeyAlgorithm.EC_P256, "dup", b"dup-1")
    with pytest.raises(HsmError, match="already holds"):
        hsm_token.generate_key(KeyAlgorithm.EC_P256, "dup", b"dup-2")


def test_data_records_are_replaced_not_duplicated(hsm_token: HsmToken) -> None:
    hsm_token.put_data("test/app", "rec", b"one")
    hsm_token.put_data("test/app", "rec", b"two")
    records = [d for d in hsm_token.data_objects("test/app") if d.label == "rec"]
    assert [r.value for r in records] == [b"two"]


def test_data_records_are_found_by_label_in_the_token(hsm_token: HsmToken) -> None:
    hsm_token.put_data("test/by-label", "wanted", b"yes")
    hsm_token.put_data("test/by-label", "other", b"no")
    hsm_token.put_data("test/other-app", "wanted", b"not this application")
    found = hsm_token.data_objects("test/by-label", "wanted")
    assert [(d.application, d.label, d.value) for d in found] == [
        ("test/by-label", "wanted", b"yes")
    ]
    assert hsm_token.data_objects("test/by-label", "absent") == []
    assert {d.label for d in hsm_token.data_objects("test/by-label")} == {"wanted", "other"}


def _validity() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(hours=1), now + dt.timedelta(days=30)


def test_rsa_key_cannot_sign_raw_pkcs1v15_but_an_unrestricted_one_can(
    hsm_token: HsmToken,
) -> None:
    """The token itself refuses CKM_RSA_PKCS with a DSC key; the control, a key made without
    CKA_ALLOWED_MECHANISMS, signs it (so the refusal is the restriction's doing)."""
    digest_info = SHA256_DIGEST_INFO + hashlib.sha256(b"request").digest()
    key = hsm_token.generate_key(KeyAlgorithm.RSA_2048, "raw-rsa", secrets.token_bytes(16))
    with pytest.raises(pkcs11.exceptions.PKCS11Error):
        key.handle.sign(digest_info, mechanism=Mechanism.RSA_PKCS)  # type: ignore[attr-defined]

    legacy = generate_legacy_key(
        hsm_token, KeyAlgorithm.RSA_2048, "raw-rsa-legacy", secrets.token_bytes(16)
    )
    signature = legacy.handle.sign(digest_info, mechanism=Mechanism.RSA_PKCS)  # type: ignore[attr-defined]
    public = serialization.load_der_public_key(hsm_token.public_key_der(legacy.key_id))
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, b"request", padding.PKCS1v15(), hashes.SHA256())  # raises if bad


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P256, KeyAlgorithm.RSA_2048])
def test_a_key_without_the_mechanism_restriction_is_refused_or_only_warned_about(
    hsm_token: HsmToken, algorithm: KeyAlgorithm
) -> None:
    label = f"legacy-{algorithm.value}"
    legacy = generate_legacy_key(hsm_token, algorithm, label, secrets.token_bytes(16))
    assert legacy.handle[Attribute.ALLOWED_MECHANISMS] == frozenset()
    with pytest.raises(WeakKeyError, match="ALLOWED_MECHANISMS empty: any mechanism"):
        check_private_key_attributes(legacy.handle, algorithm)
    (warning,) = check_private_key_attributes(legacy.handle, algorithm, allow_unrestricted=True)
    assert "ALLOWED_MECHANISMS empty" in warning


@pytest.mark.parametrize(
    ("algorithm", "allowed", "named"),
    [
        (KeyAlgorithm.RSA_2048, [Mechanism.RSA_PKCS_PSS, Mechanism.RSA_PKCS], "CKM_RSA_PKCS,"),
        (KeyAlgorithm.RSA_2048, [Mechanism.SHA256_RSA_PKCS_PSS], "CKM_SHA256_RSA_PKCS_PSS"),
        (KeyAlgorithm.EC_P256, [Mechanism.ECDSA, Mechanism.ECDSA_SHA1], "CKM_ECDSA_SHA1"),
    ],
)
def test_a_key_allowing_more_than_the_signing_mechanism_is_always_refused(
    hsm_token: HsmToken, algorithm: KeyAlgorithm, allowed: list[Mechanism], named: str
) -> None:
    label = f"wide-{secrets.token_hex(3)}"
    key = generate_legacy_key(hsm_token, algorithm, label, secrets.token_bytes(16), allowed)
    assert key.handle[Attribute.ALLOWED_MECHANISMS] == frozenset(allowed)
    with pytest.raises(WeakKeyError, match=f"ALLOWED_MECHANISMS=.*{named}"):
        check_private_key_attributes(key.handle, algorithm, allow_unrestricted=True)


@given(st.lists(st.integers(0, 2**64 - 1), max_size=8))
def test_allowed_mechanisms_pack_as_native_ulongs_and_back(values: list[int]) -> None:
    raw = pack_mechanisms(values)
    assert raw == b"".join(v.to_bytes(8, sys.byteorder) for v in values)  # 64-bit Linux
    assert unpack_mechanisms(raw) == frozenset(values)


def test_a_truncated_mechanism_array_is_refused() -> None:
    with pytest.raises(ValueError, match="whole number of CK_ULONGs"):
        unpack_mechanisms(bytes(12))


def test_destroy_removes_the_key_pair_and_its_certificate(
    hsm_token: HsmToken, dev_csca: DevCsca
) -> None:
    key_id = secrets.token_bytes(16)
    hsm_token.generate_key(KeyAlgorithm.EC_P256, "doomed", key_id)
    certificate = dev_csca.issue_dsc(hsm_token.public_key_der(key_id), "d", "VN", *_validity())
    der = certificate.public_bytes(serialization.Encoding.DER)
    hsm_token.store_certificate("doomed", key_id, der, b"\x30\x00")
    hsm_token.put_data("test/app", "doomed", b"state")
    assert hsm_token.destroy_key_objects(key_id) == 3  # private, public, certificate
    assert hsm_token.find_key("doomed") is None
    assert not [c for c in hsm_token.certificates() if c.key_id == key_id]
    with pytest.raises(HsmError, match="no public key"):
        hsm_token.public_key_der(key_id)
    assert hsm_token.delete_data("test/app", "doomed")
    assert not hsm_token.delete_data("test/app", "doomed")


def test_token_init_command_carries_no_pin(tmp_path: Path) -> None:
    """The PINs go through softhsm2-util's terminal prompts; the argv (visible in ps) has none,
    and the token really gets them: the user PIN logs in, a wrong one does not."""
    require_softhsm()
    assert init_token_command("softhsm2-util", "t") == [
        "softhsm2-util",
        "--init-token",
        "--free",
        "--label",
        "t",
    ]
    softhsm = SoftHsm(tmp_path)
    softhsm.ensure_layout()
    softhsm.init_token("pty-test", "4321-user", "8765-so")
    assert softhsm.has_token("pty-test")
    login = (
        "import sys\n"
        "from hsm import HsmLoginError, HsmToken, find_softhsm_module\n"
        "try:\n"
        "    HsmToken(find_softhsm_module(), 'pty-test', sys.argv[1]).close()\n"
        "except HsmLoginError:\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(softhsm.conf_path)}
    for pin, code in (("4321-user", 0), ("8765-so", 3)):
        run = subprocess.run(
            [sys.executable, "-c", login, pin], env=env, capture_output=True, check=False
        )
        assert run.returncode == code, run.stderr
