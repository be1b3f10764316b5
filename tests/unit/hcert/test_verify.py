"""verify_hc1 against hand-built certificates, cross-checked with pycose where it applies."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from pycose.algorithms import Es256
from pycose.headers import KID, Algorithm
from pycose.keys.cosekey import CoseKey
from pycose.messages.sign1message import Sign1Message

from signer.errors import ConfigError
from signer.hcert.verify import (
    CLOCK_SKEW,
    VERIFY_REASONS,
    VERIFY_WARNINGS,
    TrustedDsc,
    TrustStore,
    Verification,
    kid_of,
    verify_hc1,
)
from tests.unit.hcert.conftest import (
    DCC,
    ES384,
    NOW,
    PS256,
    Issuer,
    claims,
    cose_signature,
    issuer,
    pycose_verifies,
    sig_structure,
    to_hc1,
    ts,
)


def check(text: str, trust: TrustStore, **kwargs: Any) -> Verification:
    result = verify_hc1(text, trust, at=kwargs.pop("at", NOW), **kwargs)
    assert result.ok is (result.reason is None)
    assert result.reason is None or result.reason in VERIFY_REASONS
    assert result.message
    return result


@pytest.mark.parametrize("name", ["es256", "ps256"])
@pytest.mark.parametrize("tagging", ["18", "61+18", "none"])
def test_valid_verifies_here_and_in_pycose(
    request: pytest.FixtureRequest, trust: TrustStore, name: str, tagging: Any
) -> None:
    signer: Issuer = request.getfixturevalue(name)
    cose = signer.cose(tagging=tagging)
    result = check(to_hc1(cose), trust)
    assert result.ok, result.message
    assert result.dsc == signer.trusted
    assert result.decoded is not None and result.decoded.kid == signer.kid
    assert pycose_verifies(cose, signer.cert)


def test_message_signed_by_pycose_verifies(es256: Issuer, trust: TrustStore) -> None:
    pem = es256.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    message = Sign1Message(phdr={Algorithm: Es256, KID: es256.kid}, payload=cbor2.dumps(claims()))
    message.key = CoseKey.from_pem_private_key(pem.decode())
    assert check(to_hc1(message.encode()), trust).ok


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def _tampered(signer: Issuer, change: str) -> bytes:
    """A COSE_Sign1 whose signature was made over different bytes than it carries."""
    payload = cbor2.dumps(claims())
    protected = cbor2.dumps({1: signer.alg_id, 4: signer.kid})
    signature = cose_signature(signer.key, sig_structure(protected, payload))
    if change == "payload":
        payload = cbor2.dumps(claims(dcc={"forged": True}))
    elif change == "exp":
        payload = cbor2.dumps(claims(exp=ts(NOW + timedelta(days=3650))))
    elif change == "signature":
        signature = _flip_last(signature)
    elif change == "kid":  # the kid of the other DSC; protected header no longer matches
        protected = cbor2.dumps({1: signer.alg_id, 4: b"\x00" * 8})
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


@pytest.mark.parametrize("name", ["es256", "ps256"])
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("payload", "bad_signature"),
        ("exp", "bad_signature"),
        ("signature", "bad_signature"),
        ("kid", "unknown_kid"),
    ],
)
def test_tampering_fails_here_and_in_pycose(
    request: pytest.FixtureRequest, trust: TrustStore, name: str, change: str, reason: str
) -> None:
    signer: Issuer = request.getfixturevalue(name)
    cose = _tampered(signer, change)
    assert check(to_hc1(cose), trust).reason == reason
    assert not pycose_verifies(cose, signer.cert)
    # and with the kid put right, it is the signature that fails
    if change == "kid":
        store = TrustStore([TrustedDsc(signer.cert, b"\x00" * 8)])
        assert check(to_hc1(cose), store).reason == "bad_signature"


KID_CASES: list[tuple[str, Callable[[bytes], dict[str, Any]], str | None]] = [
    ("kid only unprotected (CO19)", lambda k: {"protected": {1: -7}, "unprotected": {4: k}}, None),
    (
        "protected right, unprotected wrong (CO21)",
        lambda k: {"protected": {1: -7, 4: k}, "unprotected": {4: b"wrongkid"}},
        None,
    ),
    (
        "protected wrong, unprotected right (CO22)",
        lambda k: {"protected": {1: -7, 4: b"wrongkid"}, "unprotected": {4: k}},
        "unknown_kid",
    ),
    ("no kid at all", lambda k: {"protected": {1: -7}}, "unknown_kid"),
    ("kid of 7 bytes (CO25)", lambda k: {"protected": {1: -7, 4: k[:7]}}, "unknown_kid"),
    (
        "alg only unprotected (CO20)",
        lambda k: {"protected": {}, "unprotected": {1: -7, 4: k}},
        None,
    ),
    ("no alg", lambda k: {"protected": {4: k}}, "unsupported_alg"),
    ("ES384", lambda k: {"protected": {1: ES384, 4: k}}, "unsupported_alg"),
    (
        "PS256 declared, EC key (CO27)",
        lambda k: {"protected": {1: PS256, 4: k}},
        "alg_key_mismatch",
    ),
]


@pytest.mark.parametrize(("case", "headers", "reason"), KID_CASES)
def test_headers(
    es256: Issuer,
    trust: TrustStore,
    case: str,
    headers: Callable[[bytes], dict[str, Any]],
    reason: str | None,
) -> None:
    assert check(es256.hc1(**headers(es256.kid)), trust).reason == reason, case


def test_kid_collision_tries_every_dsc(es256: Issuer, ps256: Issuer) -> None:
    impostor = issuer(ec.generate_private_key(ec.SECP256R1()), -7, cn="Impostor")
    store = TrustStore([TrustedDsc(impostor.cert, es256.kid), es256.trusted, ps256.trusted])
    assert store.lookup(es256.kid) == (TrustedDsc(impostor.cert, es256.kid), es256.trusted)
    result = check(es256.hc1(), store)
    assert result.ok and result.dsc == es256.trusted
    forged = check(impostor.hc1(protected={1: -7, 4: es256.kid}, signature=b"\x01" * 64), store)
    assert forged.reason == "bad_signature"
    assert "2 DSCs" in forged.message
    assert base64.b64encode(es256.kid).decode() in forged.message


def test_es256_with_p384_key_rejected(p384: Issuer) -> None:
    store = TrustStore([p384.trusted])
    signature = p384.cose()  # 96-byte r || s over P-384 (vectors ES/401–403)
    assert check(to_hc1(signature), store).reason == "alg_key_mismatch"


def test_es256_with_rsa_key_rejected(ps256: Issuer, trust: TrustStore) -> None:
    assert check(ps256.hc1(protected={1: -7, 4: ps256.kid}), trust).reason == "alg_key_mismatch"


@pytest.mark.parametrize("length", [0, 3, 63, 65, 72, 96, 200])
def test_es256_signature_of_wrong_length(es256: Issuer, trust: TrustStore, length: int) -> None:
    result = check(es256.hc1(signature=b"\x30" * length), trust)
    assert result.reason == "bad_signature"


def test_es256_der_signature_rejected(es256: Issuer, trust: TrustStore) -> None:
    assert isinstance(es256.key, ec.EllipticCurvePrivateKey)
    protected = cbor2.dumps({1: -7, 4: es256.kid})
    payload = cbor2.dumps(claims())
    der = es256.key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    assert check(es256.hc1(payload=payload, signature=der), trust).reason == "bad_signature"


@pytest.mark.parametrize("salt", [20, padding.PSS.MAX_LENGTH])
def test_ps256_needs_salt_32(ps256: Issuer, trust: TrustStore, salt: Any) -> None:
    assert isinstance(ps256.key, rsa.RSAPrivateKey)
    protected = cbor2.dumps({1: PS256, 4: ps256.kid})
    payload = cbor2.dumps(claims())
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
    signature = ps256.key.sign(sig_structure(protected, payload), pss, hashes.SHA256())
    assert check(ps256.hc1(payload=payload, signature=signature), trust).reason == "bad_signature"
    assert check(ps256.hc1(signature=signature[:-1]), trust).reason == "bad_signature"


HOUR = timedelta(hours=1)

# (description, claims kwargs, DSC validity kwargs, at, reason)
TIME_CASES: list[tuple[str, dict[str, Any], dict[str, datetime], datetime, str | None]] = [
    ("valid", {}, {}, NOW, None),
    ("exp just passed", {"exp": ts(NOW) - 1}, {}, NOW, "expired"),
    ("at exp exactly", {"exp": ts(NOW)}, {}, NOW, None),
    ("iat in the future", {"iat": ts(NOW + CLOCK_SKEW + HOUR)}, {}, NOW, "not_yet_valid"),
    ("iat within clock skew", {"iat": ts(NOW + CLOCK_SKEW / 2)}, {}, NOW, None),
    ("DSC not yet valid", {}, {"not_before": NOW + HOUR}, NOW, "not_yet_valid"),
    ("DSC expired", {}, {"not_after": NOW - HOUR}, NOW, "dsc_expired"),
    ("checked years later", {}, {}, NOW + timedelta(days=400), "expired"),
]


@pytest.mark.parametrize(("case", "cwt", "validity", "at", "reason"), TIME_CASES)
def test_time(
    es256: Issuer,
    case: str,
    cwt: dict[str, Any],
    validity: dict[str, datetime],
    at: datetime,
    reason: str | None,
) -> None:
    signer = issuer(es256.key, -7, **validity) if validity else es256
    store = TrustStore([signer.trusted])
    text = signer.hc1(payload=claims(**cwt))
    result = check(text, store, at=at)
    assert result.reason == reason, case
    # the signature held, so the DSC is named even when a time rule failed
    assert result.dsc == signer.trusted
    assert check(text, store, at=at, check_time=False).ok


def test_no_exp_fails_only_when_time_checked(es256: Issuer, trust: TrustStore) -> None:
    payload = claims()
    del payload[4]
    assert check(es256.hc1(payload=payload), trust).reason == "no_expiry"
    assert check(es256.hc1(payload=payload), trust, check_time=False).ok


def test_signature_checked_before_time(es256: Issuer, trust: TrustStore) -> None:
    expired = claims(exp=ts(NOW - HOUR))
    assert check(es256.hc1(payload=expired, signature=b"\x01" * 64), trust).reason == (
        "bad_signature"
    )


def test_default_time_is_now_and_naive_time_refused(es256: Issuer, trust: TrustStore) -> None:
    now = datetime.now(NOW.tzinfo)
    assert verify_hc1(es256.hc1(payload=claims(iat=ts(now), exp=ts(now + HOUR))), trust).ok
    with pytest.raises(ValueError, match="timezone"):
        verify_hc1(es256.hc1(), trust, at=NOW.replace(tzinfo=None))


def test_decode_failures_pass_through(trust: TrustStore, es256: Issuer) -> None:
    result = check("HC2:" + es256.hc1()[4:], trust)
    assert (result.reason, result.decoded, result.dsc) == ("prefix", None, None)


def test_kid_is_sha256_prefix_of_der(es256: Issuer) -> None:
    der = es256.cert.public_bytes(serialization.Encoding.DER)
    assert kid_of(der) == es256.cert.fingerprint(hashes.SHA256())[:8]
    assert TrustedDsc.from_certificate(es256.cert).kid == kid_of(der)


def test_trust_store_deduplicates(es256: Issuer, ps256: Issuer) -> None:
    store = TrustStore([es256.trusted, es256.trusted, ps256.trusted])
    assert len(store) == 2 and list(store) == [es256.trusted, ps256.trusted]
    assert store.lookup(b"12345678") == ()


def test_load_pem_dir(tmp_path: Path, es256: Issuer, ps256: Issuer, p384: Issuer) -> None:
    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    (tmp_path / "two.pem").write_bytes(pem(es256.cert) + b"\n" + pem(ps256.cert))
    (tmp_path / "der.crt").write_bytes(p384.cert.public_bytes(serialization.Encoding.DER))
    (tmp_path / "ignored.txt").write_bytes(b"not a certificate")
    store = TrustStore.load_pem_dir(tmp_path)
    assert len(store) == 3
    for signer in (es256, ps256, p384):
        assert store.lookup(signer.kid) == (signer.trusted,)
    assert check(es256.hc1(), store).ok

    (tmp_path / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    with pytest.raises(ConfigError, match=r"broken\.pem"):
        TrustStore.load_pem_dir(tmp_path)
    with pytest.raises(ConfigError):
        TrustStore.load_pem_dir(tmp_path / "missing")


OFFICIAL = "1.3.6.1.4.1.1847.2021.1."
MISTYPED = "1.3.6.1.4.1.0.1847.2021.1."  # what most test DSCs carry (HCERT.md §7)
CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"


def _dcc(group: str) -> dict[str, Any]:
    dcc = {k: v for k, v in DCC.items() if k != "v"}
    return {**dcc, group: [{}]}


# (EKU OIDs of the DSC or None for no EKU, the DCC group signed, allowed?)
EKU_CASES: list[tuple[list[str] | None, str, bool]] = [
    (None, "t", True),  # no EKU: every type
    ([CLIENT_AUTH], "r", True),  # only non-DCC OIDs: every type (HK, AND)
    ([OFFICIAL + "2"], "v", True),
    ([OFFICIAL + "2"], "t", False),
    ([OFFICIAL + "1", OFFICIAL + "3"], "r", True),
    ([OFFICIAL + "1", OFFICIAL + "3"], "v", False),
    ([MISTYPED + "1"], "t", True),
    ([MISTYPED + "1", CLIENT_AUTH], "v", False),
    ([MISTYPED + "3"], "r", True),
]


@pytest.mark.parametrize(("eku", "group", "allowed"), EKU_CASES)
@pytest.mark.parametrize("check_time", [True, False])
def test_dsc_eku_limits_the_certificate_type(
    es256: Issuer, eku: list[str] | None, group: str, allowed: bool, check_time: bool
) -> None:
    signer = issuer(es256.key, -7, eku=eku)
    store = TrustStore([signer.trusted])
    result = check(signer.hc1(payload=claims(dcc=_dcc(group))), store, check_time=check_time)
    assert result.reason == (None if allowed else "dsc_type_not_allowed"), result.message
    assert result.dsc == signer.trusted  # the signature held either way


def test_float_times_verify_with_a_warning(es256: Issuer, trust: TrustStore) -> None:
    payload = {**claims(), 6: ts(NOW - HOUR) + 0.75, 4: float(ts(NOW + HOUR))}
    result = check(es256.hc1(payload=payload), trust)
    assert result.ok, result.message
    assert [w.code for w in result.warnings] == ["float_time", "float_time"]
    assert result.decoded is not None and result.decoded.iat == ts(NOW - HOUR)
    assert "warning float_time" in result.message
    expired = {**claims(), 4: ts(NOW) - 0.5}  # rounded down: one second before now
    assert check(es256.hc1(payload=expired), trust).reason == "expired"


def test_exp_after_dsc_and_foreign_iss_are_warnings(es256: Issuer) -> None:
    signer = issuer(es256.key, -7, not_after=NOW + HOUR, country="VN")
    store = TrustStore([signer.trusted])
    plain = check(signer.hc1(payload=claims(iss="VN", exp=ts(NOW + HOUR))), store)
    assert plain.ok and plain.warnings == ()
    result = check(signer.hc1(payload=claims(iss="DE", exp=ts(NOW + 2 * HOUR))), store)
    assert result.ok, result.message
    assert [w.code for w in result.warnings] == ["exp_after_dsc", "iss_country"]
    assert "'DE'" in result.message and "'VN'" in result.message
    assert set(VERIFY_WARNINGS) >= {w.code for w in result.warnings}


@pytest.mark.parametrize(
    ("dcc", "reason"),
    [
        (b"\x01garbage", "hcert_structure"),  # vector CBO1: the -260/1 value is no map
        ({**DCC, "dob": {7: "non-text key"}}, "hcert_structure"),
        ({**DCC, "v": [{"dn": 2**64}]}, "hcert_structure"),
        ({**DCC, "t": [{}]}, "hcert_structure"),
    ],
)
def test_hostile_content_is_read_only_after_the_signature(
    es256: Issuer, trust: TrustStore, dcc: Any, reason: str
) -> None:
    text = es256.hc1(payload=claims(dcc=dcc))
    result = check(text, trust)
    assert (result.reason, result.decoded, result.dsc) == (reason, None, es256.trusted)
    forged = es256.hc1(payload=claims(dcc=dcc), signature=b"\x01" * 64)
    assert check(forged, trust).reason == "bad_signature"
    assert check(text, trust, check_time=False).reason == reason  # Reissue's call


def test_iat_beyond_int64_is_cwt_structure(es256: Issuer, trust: TrustStore) -> None:
    result = check(es256.hc1(payload={**claims(), 6: 2**64}), trust)
    assert (result.reason, result.dsc) == ("cwt_structure", es256.trusted)


def test_schema_only_when_asked(es256: Issuer, trust: TrustStore) -> None:
    assert check(es256.hc1(), trust, schema=True).ok
    broken = {**DCC, "v": [{**DCC["v"][0], "dn": 0}]}
    del broken["dob"]
    text = es256.hc1(payload=claims(dcc=broken))
    assert check(text, trust).ok
    result = check(text, trust, schema=True)
    assert result.reason == "schema"
    assert "/dob: required" in result.message and "/v/0/dn: below 1" in result.message


def test_every_reason_documented() -> None:
    produced = {"prefix", "base45", "zlib", "cose_structure", "cwt_structure", "too_large"}
    produced |= {r for *_, r in KID_CASES if r} | {r for *_, r in TIME_CASES if r}
    produced |= {"bad_signature", "no_expiry", "hcert_structure", "dsc_type_not_allowed"}
    produced |= {"schema"}
    assert produced == set(VERIFY_REASONS)


@pytest.fixture(scope="module")
def valid_text(es256: Issuer) -> str:
    """Fixed once: ECDSA signatures are randomised, hypothesis needs the same input each run."""
    return es256.hc1()


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_fuzz_never_raises(trust: TrustStore, text: str) -> None:
    check("HC1:" + text, trust)
    check(text, trust)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fuzz_damaged_valid_strings(
    trust: TrustStore, valid_text: str, data: st.DataObject
) -> None:
    text = valid_text
    pos = data.draw(st.integers(4, len(text) - 1))
    text = text[:pos] + data.draw(st.sampled_from(text)) + text[pos + 1 :]
    result = check(text, trust)
    # a change may at most hit bits zlib ignores; what verifies must be what was signed
    assert not result.ok or result.decoded == check(valid_text, trust).decoded
