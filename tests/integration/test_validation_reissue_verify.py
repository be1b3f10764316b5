"""Issue 3 over gRPC against the real server: per-item validation errors, re-issue of an expired
certificate, Verify agreeing with an independent verifier, QR images, hash-only signing."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import base45 as pypi_base45
import cbor2
import grpc
import pytest
import zxingcpp
from cryptography import x509
from PIL import Image

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.ledger.records import Entry, encode
from signer.ledger.sqlite import SqliteLedger
from tests.conftest import Appliance, start_appliance, stop_appliance
from tests.independent import cose_bytes, hc1_claims, hc1_verifies, untag
from tests.integration.helpers import CoseParts, signature_hash, signed_in_hsm

DAY = 86400


def _sign(appliance: Appliance, payloads: list[Any], **request: Any) -> list[pb.ItemResult]:
    items = [
        pb.SignItem(id=str(i), payload_json=json.dumps(p, ensure_ascii=False))
        for i, p in enumerate(payloads)
    ]
    return list(appliance.stub().SignBatch(pb.SignBatchRequest(items=items, **request)).results)


def _errors(result: pb.ItemResult) -> set[tuple[str, str]]:
    assert result.HasField("rejected"), result
    return {(e.code, e.path) for e in result.rejected.errors}


# -- validation over the wire ---------------------------------------------------------------------


def test_bad_records_get_all_their_errors_at_json_paths(appliance: Appliance) -> None:
    good, bad = copy.deepcopy(vaccination_payloads(2, seed=31))
    bad["nam"]["fnt"] = "NGUYEN<VAN"  # not the transliteration of fn
    bad["v"][0]["dt"] = "2021-13-01"  # no 13th month
    bad["v"][0]["mp"] = "Not-A-Vaccine"  # not in the value set
    bad["dob"] = "1900-01-01"  # before the plausible minimum 1900-01-02
    results = _sign(appliance, [good, bad])
    assert results[0].HasField("signed")
    errors = _errors(results[1])
    assert ("transliteration_mismatch", "/nam/fnt") in errors
    assert ("format", "/v/0/dt") in errors
    assert ("value_set", "/v/0/mp") in errors
    assert ("implausible", "/dob") in errors
    mismatch = next(e for e in results[1].rejected.errors if e.code == "transliteration_mismatch")
    assert "NGUYEN<VAN" in mismatch.message and bad["nam"]["fn"] in mismatch.message


def test_duplicate_uvci_in_one_batch_is_flagged(appliance: Appliance) -> None:
    first, second = copy.deepcopy(vaccination_payloads(2, seed=32))
    second["v"][0]["ci"] = first["v"][0]["ci"]
    results = _sign(appliance, [first, second])
    assert results[0].HasField("signed")
    assert _errors(results[1]) == {("duplicate_uvci", "/v/0/ci")}


def test_missing_transliteration_is_derived_and_signed(appliance: Appliance) -> None:
    payload = copy.deepcopy(vaccination_payloads(1, seed=33)[0])
    payload["nam"] = {"fn": "Nguyễn", "gn": "Thị Đào"}
    (result,) = _sign(appliance, [payload])
    assert result.HasField("signed"), result
    nam = hc1_claims(result.signed.hc1)[-260][1]["nam"]
    assert nam == {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Thị Đào", "gnt": "THI<DAO"}


def test_deprecated_code_signs_with_a_warning(appliance: Appliance) -> None:
    payload = copy.deepcopy(vaccination_payloads(1, seed=34)[0])
    payload["v"][0]["vp"] = "J07BX03"  # active: false in the value set
    (result,) = _sign(appliance, [payload])
    assert result.HasField("signed")
    assert [(w.code, w.path) for w in result.signed.warnings] == [("deprecated_code", "/v/0/vp")]


# -- re-issue -----------------------------------------------------------------------------------


def _register(appliance: Appliance, hc1: str) -> None:
    """Record ``hc1`` in the appliance's ledger on a chain of its own, as an officer's
    registration of a certificate issued before the ledger would (SIGNATURE hash computed here
    from the COSE bytes: r alone for ES256)."""
    parts = CoseParts.of(hc1)
    es256 = parts.header()[1] == -7
    signature = signature_hash(hc1)
    claims = hc1_claims(hc1)
    store = SqliteLedger(appliance.directory / "dev" / "ledger.sqlite", "test-registrations")
    entry = Entry(
        time.time_ns() // 1000,
        "officer",
        None,
        "Register",
        parts.header()[4],
        "ES256" if es256 else "PS256",
        "vaccination",
        claims[6],
        claims[4],
        None,
        None,
        signature,
        None,
    )
    store.append([(signature, encode(entry))])
    store.close()


def test_reissue_of_an_expired_certificate(appliance: Appliance) -> None:
    payload = vaccination_payloads(1, seed=35)[0]
    # Signed two minutes ago (the dev DSC is an hour older), expired a minute ago.
    old = signed_in_hsm(appliance, payload, -120, -60)
    dscs = appliance.dsc_by_kid()
    old_claims = hc1_claims(old)
    assert old_claims[4] < time.time()  # really expired

    request = pb.ReissueRequest(items=[pb.ReissueItem(id="old", hc1=old)])

    # Signed with the PIN directly in the HSM, outside the appliance: the ledger has no record.
    (refused,) = appliance.stub().Reissue(request, timeout=60).results
    assert [e.code for e in refused.rejected.errors] == ["hc1_not_issued_here"], refused
    _register(appliance, old)

    (result,) = appliance.stub().Reissue(request, timeout=60).results
    assert result.id == "old" and result.HasField("signed"), result
    new = result.signed
    assert hc1_verifies(new.hc1, dscs[new.kid])
    new_claims = hc1_claims(new.hc1)
    assert new_claims[-260][1] == old_claims[-260][1] == payload
    assert new_claims[4] == new.exp > time.time() + 300 * DAY
    assert new.exp > old_claims[4] and new.iat > old_claims[6]


def test_reissue_refuses_an_original_signed_before_its_dsc(appliance: Appliance) -> None:
    """Signed with the PIN, dated 400 days back: its DSC did not exist then (issue 8 §6)."""
    old = signed_in_hsm(appliance, vaccination_payloads(1, seed=37)[0], -400 * DAY, -35 * DAY)
    _register(appliance, old)  # even a ledger record does not make it re-issuable
    request = pb.ReissueRequest(items=[pb.ReissueItem(id="old", hc1=old)])
    (refused,) = appliance.stub().Reissue(request, timeout=60).results
    assert [e.code for e in refused.rejected.errors] == ["hc1_outside_key_period"], refused
    assert "outside its DSC's validity" in refused.rejected.errors[0].message


def test_reissue_refuses_tampered_and_foreign_strings(appliance: Appliance) -> None:
    (signed,) = _sign(appliance, vaccination_payloads(1, seed=36))
    array = list(cbor2.loads(untag(cose_bytes(signed.signed.hc1))))
    claims = cbor2.loads(array[2])
    claims[-260][1]["nam"]["fn"] = "Trần"
    array[2] = cbor2.dumps(claims)
    tampered = (
        "HC1:"
        + pypi_base45.b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, array)))).decode()
    )
    items = [
        pb.ReissueItem(id="tampered", hc1=tampered),
        pb.ReissueItem(id="garbage", hc1="HC1:NOT BASE45 AT ALL!"),
        pb.ReissueItem(id="no-prefix", hc1=signed.signed.hc1[4:]),
    ]
    results = appliance.stub().Reissue(pb.ReissueRequest(items=items)).results
    codes = {r.id: r.rejected.errors[0].code for r in results}
    assert codes == {
        "tampered": "hc1_bad_signature",
        "garbage": "hc1_base45",
        "no-prefix": "hc1_prefix",
    }


# -- Verify RPC vs an independent verifier ------------------------------------------------------


def test_verify_agrees_with_pycose_on_valid_and_tampered(appliance: Appliance) -> None:
    results = _sign(appliance, vaccination_payloads(3, seed=37))
    good = [r.signed.hc1 for r in results]
    cose = bytearray(cose_bytes(good[0]))
    cose[-1] ^= 0x01  # last signature byte
    bad_signature = "HC1:" + pypi_base45.b45encode(zlib.compress(bytes(cose))).decode()
    strings = [*good, bad_signature]
    dscs = appliance.dsc_by_kid()
    response = appliance.stub().Verify(
        pb.VerifyRequest(items=[pb.VerifyItem(id=str(i), hc1=s) for i, s in enumerate(strings)])
    )
    for text, verdict in zip(strings, response.results, strict=True):
        kid = hc1_cose_kid(text)
        assert verdict.valid == hc1_verifies(text, dscs[kid])
    assert [v.valid for v in response.results] == [True, True, True, False]
    assert response.results[3].reason == "bad_signature"
    first = response.results[0]
    assert json.loads(first.payload_json) == vaccination_payloads(3, seed=37)[0]
    assert first.iss == "VN" and first.kid == results[0].signed.kid


def test_verify_judges_validity_at_a_given_instant(appliance: Appliance) -> None:
    (result,) = _sign(appliance, vaccination_payloads(1, seed=38))
    later = result.signed.exp + DAY
    response = appliance.stub().Verify(
        pb.VerifyRequest(items=[pb.VerifyItem(id="x", hc1=result.signed.hc1)], at=later)
    )
    assert (response.results[0].valid, response.results[0].reason) == (False, "expired")


def hc1_cose_kid(hc1: str) -> bytes:
    protected = cbor2.loads(untag(cose_bytes(hc1)))[0]
    kid = cbor2.loads(protected)[4]
    assert isinstance(kid, bytes)
    return kid


# -- QR output ------------------------------------------------------------------------------------


def test_qr_png_and_svg_decode_back_to_the_hc1(appliance: Appliance) -> None:
    output = pb.OutputOptions(qr_png=True, qr_svg=True, qr_scale=3)
    (result,) = _sign(appliance, vaccination_payloads(1, seed=39), output=output)
    signed = result.signed
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(signed.qr_png)))
    assert [d.text for d in decoded] == [signed.hc1]
    assert decoded[0].format == zxingcpp.BarcodeFormat.QRCode
    assert decoded[0].ec_level == "Q"
    assert signed.qr_svg.startswith("<svg") and "</svg>" in signed.qr_svg
    plain = _sign(appliance, vaccination_payloads(1, seed=39))[0].signed
    assert plain.qr_png == b"" and plain.qr_svg == ""


# -- hash-only signing --------------------------------------------------------------------


@pytest.fixture(scope="module")
def hash_appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    running, process = start_appliance(
        tmp_path_factory.mktemp("hash-only"), "[hash_only]\nenabled = true\n", workers=1
    )
    try:
        yield running
    finally:
        stop_appliance(process)


@pytest.mark.parametrize("alg", [pb.ALGORITHM_ES256, pb.ALGORITHM_PS256])
def test_hash_only_flow_builds_a_verifying_certificate(
    hash_appliance: Appliance, alg: pb.Algorithm.ValueType
) -> None:
    """The README's client recipe: build the CWT and Sig_structure, send only the digest."""
    entry = next(e for e in hash_appliance.trust_list() if e.alg == alg)
    payload = vaccination_payloads(1, seed=40)[0]
    now = int(time.time())
    protected = cbor2.dumps({1: -7 if alg == pb.ALGORITHM_ES256 else -37, 4: entry.kid})
    claims = cbor2.dumps({1: "VN", 6: now, 4: now + 365 * DAY, -260: {1: payload}})
    digest = hashlib.sha256(cbor2.dumps(["Signature1", protected, b"", claims])).digest()

    response = hash_appliance.stub().SignHash(
        pb.SignHashRequest(
            kid=entry.kid,
            items=[pb.HashItem(id="h", digest=digest), pb.HashItem(id="short", digest=digest[:20])],
        )
    )
    assert response.alg == alg
    signature = response.results[0].signature
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, claims, signature]))
    hc1 = "HC1:" + pypi_base45.b45encode(zlib.compress(cose, 9)).decode()
    assert hc1_verifies(hc1, x509.load_der_x509_certificate(entry.certificate_der))
    assert response.results[1].rejected.errors[0].code == "digest_length"


def test_hash_only_is_refused_unless_enabled_and_for_unknown_kids(
    appliance: Appliance, hash_appliance: Appliance
) -> None:
    kid = appliance.trust_list()[0].kid
    request = pb.SignHashRequest(kid=kid, items=[pb.HashItem(id="h", digest=b"\x00" * 32)])
    with pytest.raises(grpc.RpcError) as disabled:
        appliance.stub().SignHash(request)
    assert disabled.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "disabled" in disabled.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        hash_appliance.stub().SignHash(pb.SignHashRequest(kid=b"12345678", items=request.items))
    assert unknown.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_verify_and_reissue(appliance: Appliance, tmp_path: Path) -> None:
    results = _sign(appliance, vaccination_payloads(3, seed=41))
    signed = tmp_path / "signed.txt"
    signed.write_text("".join(r.signed.hc1 + "\n" for r in results) + "HC1:broken\n")
    trust = tmp_path / "trust"
    cli = [sys.executable, "-m", "signer.cli"]
    subprocess.run(
        [*cli, "trust-list", "--server", appliance.address, "--out", str(trust)], check=True
    )

    verify = subprocess.run(
        [*cli, "verify", str(signed), "--trust-dir", str(trust)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 1  # the broken line
    lines = [json.loads(line) for line in verify.stdout.splitlines()]
    assert [line["valid"] for line in lines] == [True, True, True, False]
    assert lines[3]["reason"] == "base45"

    future = subprocess.run(
        [*cli, "verify", str(signed), "--trust-dir", str(trust), "--at", "2099-01-01T00:00Z"],
        capture_output=True,
        text=True,
        check=False,
    )
    reasons = [json.loads(line).get("reason") for line in future.stdout.splitlines()]
    assert reasons == ["expired", "expired", "expired", "base45"]

    reissue = subprocess.run(
        [*cli, "reissue", str(signed), "--server", appliance.address, "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert reissue.returncode == 1
    out = [json.loads(line) for line in reissue.stdout.splitlines()]
    assert ["hc1" in line for line in out] == [True, True, True, False]
    assert out[3]["errors"][0]["code"] == "hc1_base45"


def test_cli_sign_writes_qr_codes(appliance: Appliance, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in vaccination_payloads(2, seed=42))
    )
    done = subprocess.run(
        [
            *(sys.executable, "-m", "signer.cli", "sign", str(source), "--quiet"),
            *("--server", appliance.address, "--qr", "png,svg", "--qr-dir", str(tmp_path / "qr")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for line in map(json.loads, done.stdout.splitlines()):
        png = Path(line["qr_png"])
        assert png == tmp_path / "qr" / f"{line['line']}.png"
        assert [d.text for d in zxingcpp.read_barcodes(Image.open(png))] == [line["hc1"]]
        assert Path(line["qr_svg"]).read_text().startswith("<svg")


def _signed_by_appliance(appliance: Appliance, claims: bytes) -> str:
    """An HC1 over arbitrary claims bytes, signed by the appliance's ES256 key (hash-only)."""
    entry = next(e for e in appliance.trust_list() if e.alg == pb.ALGORITHM_ES256)
    protected = cbor2.dumps({1: -7, 4: entry.kid})
    digest = hashlib.sha256(cbor2.dumps(["Signature1", protected, b"", claims])).digest()
    response = appliance.stub().SignHash(
        pb.SignHashRequest(kid=entry.kid, items=[pb.HashItem(id="h", digest=digest)])
    )
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, claims, response.results[0].signature]))
    return "HC1:" + str(pypi_base45.b45encode(zlib.compress(cose, 9)).decode())


def test_hostile_cbor_gets_per_item_answers_from_verify_and_reissue(
    hash_appliance: Appliance,
) -> None:
    """Validly signed certificates with hostile CBOR inside (issue 10 §2): each is judged on its
    own, the good one in the same batch is answered, and nothing ends in INTERNAL."""
    now = int(time.time())
    good = vaccination_payloads(1, seed=41)[0]
    hostile: dict[str, dict[Any, Any]] = {
        "non_text_key": {1: "VN", 6: now, 4: now + DAY, -260: {1: {7: "x", **good}}},
        "huge_int": {1: "VN", 6: now, 4: now + DAY, -260: {1: {**good, "n": 2**70}}},
        "iat_past_int64": {1: "VN", 6: 2**70, 4: 2**71, -260: {1: good}},
        "nan_exp": {1: "VN", 6: now, 4: float("nan"), -260: {1: good}},
        "not_a_map": {1: "VN", 6: now, 4: now + DAY, -260: {1: b"garbage"}},
        "two_groups": {1: "VN", 6: now, 4: now + DAY, -260: {1: {**good, "t": good["v"]}}},
    }
    texts = {
        name: _signed_by_appliance(hash_appliance, cbor2.dumps(c)) for name, c in hostile.items()
    }
    texts["good"] = _signed_by_appliance(
        hash_appliance, cbor2.dumps({1: "VN", 6: now, 4: now + DAY, -260: {1: good}})
    )
    signer = hash_appliance.stub()
    verdicts = signer.Verify(
        pb.VerifyRequest(items=[pb.VerifyItem(id=n, hc1=t) for n, t in texts.items()]),
        timeout=60,
    ).results
    by_id = {v.id: v for v in verdicts}
    assert list(by_id) == list(texts)
    assert by_id["good"].valid, by_id["good"].message
    for name in hostile:
        assert not by_id[name].valid, name
        assert by_id[name].reason in {"cwt_structure", "hcert_structure", "no_expiry"}, (
            name,
            by_id[name].reason,
        )
    reissued = signer.Reissue(
        pb.ReissueRequest(items=[pb.ReissueItem(id=n, hc1=t) for n, t in texts.items()]),
        timeout=60,
    ).results
    assert [r.id for r in reissued] == list(texts)
    assert reissued[-1].HasField("signed"), reissued[-1].rejected
    for result in reissued[:-1]:
        assert result.HasField("rejected"), result.id
        assert result.rejected.errors[0].code.startswith("hc1_"), result.rejected.errors
