"""End to end through the real server: gRPC in, HC1 out, checked by pycose and by our verifier.

Every test talks to the session ``appliance`` (2 worker processes, an active ES256 and an
active PS256 dev key in SoftHSM) over 127.0.0.1, so the front, the workers and the HSM all run.
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.hcert.verify import TrustStore, verify_hc1
from tests.conftest import Appliance
from tests.independent import PycoseDidNotCheck, hc1_claims, hc1_verifies
from tests.integration.helpers import (
    COSE_ALG,
    DAY,
    SIGNATURE_LENGTH,
    TEST_PAYLOAD,
    AlgValue,
    CoseParts,
    alive,
    channel,
    items,
    kid_of_der,
    sample,
    scrape,
    series,
    sign_one,
    stub,
    to_json,
    trust_store,
)

ALGS = pytest.mark.parametrize(
    "alg", [pb.ALGORITHM_ES256, pb.ALGORITHM_PS256], ids=["ES256", "PS256"]
)
SERVICE = "hcert.signer.v1.Signer"


@pytest.fixture(scope="module")
def dscs(appliance: Appliance) -> dict[bytes, x509.Certificate]:
    """The DSCs by kid, as GetTrustList names them."""
    return appliance.dsc_by_kid()


@pytest.fixture(scope="module")
def trust(dscs: dict[bytes, x509.Certificate]) -> TrustStore:
    return trust_store(dscs.values())


def check_signed(
    result: pb.Signed,
    payload: Any,
    alg: AlgValue,
    dscs: dict[bytes, x509.Certificate],
    trust: TrustStore,
) -> None:
    """Everything an HCERT issuer must get right about one certificate (HCERT.md §1–§5)."""
    hc1 = result.hc1
    assert result.alg == alg
    dsc = dscs[result.kid]
    assert kid_of_der(dsc.public_bytes(serialization.Encoding.DER)) == result.kid
    assert hc1_verifies(hc1, dsc), "pycose rejects the signature"
    verdict = verify_hc1(hc1, trust)
    assert verdict.ok, verdict.message

    parts = CoseParts.of(hc1)
    assert parts.tagged, "COSE_Sign1 must carry tag 18"
    assert parts.header() == {1: COSE_ALG[alg], 4: result.kid}
    assert parts.unprotected == {}
    assert len(parts.signature) == SIGNATURE_LENGTH[alg]

    claims = hc1_claims(hc1)
    assert set(claims) == {1, 4, 6, -260}
    assert claims[1] == "VN"
    assert claims[6] == result.iat
    assert claims[4] == result.exp
    assert result.exp - result.iat == 365 * DAY
    assert claims[-260] == {1: payload}


# --- signing ----------------------------------------------------------------------------------


@ALGS
def test_sign_batch_of_realistic_payloads_verifies_independently(
    appliance: Appliance,
    dscs: dict[bytes, x509.Certificate],
    trust: TrustStore,
    alg: AlgValue,
) -> None:
    payloads = vaccination_payloads(50, seed=100 + alg)
    before = time.time()
    response = stub(appliance.address).SignBatch(
        pb.SignBatchRequest(items=items(payloads, "e2e"), alg=alg), timeout=120
    )
    after = time.time()

    assert [r.id for r in response.results] == [f"e2e-{i}" for i in range(50)]
    for result, payload in zip(response.results, payloads, strict=True):
        assert result.HasField("signed"), result.rejected
        check_signed(result.signed, payload, alg, dscs, trust)
        assert int(before) <= result.signed.iat <= after
    assert len({r.signed.hc1 for r in response.results}) == 50


# --- tampering --------------------------------------------------------------------------------


def _flip_dob_digit(parts: CoseParts) -> CoseParts:
    """Change one byte of the payload bstr: the last digit of the date of birth."""
    dob = parts.claims()[-260][1]["dob"].encode()
    offset = parts.payload.index(dob) + len(dob) - 1
    digit = parts.payload[offset]
    return parts.with_payload_byte(offset, ord("0") + (digit - ord("0") + 1) % 10)


def _bump_exp(parts: CoseParts) -> CoseParts:
    claims = parts.claims()
    claims[4] += 365 * DAY
    return parts.with_claims(claims)


def _other_kid(parts: CoseParts) -> CoseParts:
    header = parts.header()
    kid = bytearray(header[4])
    kid[0] ^= 0xFF
    return parts.with_protected({1: header[1], 4: bytes(kid)})


TAMPERING = {
    "payload byte": (_flip_dob_digit, "bad_signature"),
    "signature byte": (lambda p: p.with_signature_bit_flipped(5), "bad_signature"),
    "kid in protected header": (_other_kid, "unknown_kid"),
    "exp claim": (_bump_exp, "bad_signature"),
}


@pytest.fixture(scope="module")
def fresh(appliance: Appliance) -> dict[AlgValue, pb.Signed]:
    """One freshly signed certificate per algorithm."""
    payload = to_json(vaccination_payloads(1, seed=7)[0])
    signed: dict[AlgValue, pb.Signed] = {}
    for alg in (pb.ALGORITHM_ES256, pb.ALGORITHM_PS256):
        result = sign_one(appliance.address, payload, alg)
        assert result.HasField("signed"), result.rejected
        signed[alg] = result.signed
    return signed


@ALGS
def test_untouched_reencoding_still_verifies(
    fresh: dict[AlgValue, pb.Signed],
    dscs: dict[bytes, x509.Certificate],
    trust: TrustStore,
    alg: AlgValue,
) -> None:
    """The tampering harness itself: re-encoding without a change must keep both verdicts."""
    signed = fresh[alg]
    again = CoseParts.of(signed.hc1).hc1()
    assert hc1_verifies(again, dscs[signed.kid])
    assert verify_hc1(again, trust).ok


@ALGS
@pytest.mark.parametrize("change", list(TAMPERING))
def test_tampered_certificate_fails_both_verifiers(
    fresh: dict[AlgValue, pb.Signed],
    dscs: dict[bytes, x509.Certificate],
    trust: TrustStore,
    alg: AlgValue,
    change: str,
) -> None:
    signed = fresh[alg]
    tamper, reason = TAMPERING[change]
    original = CoseParts.of(signed.hc1)
    tampered_parts = tamper(original)
    assert tampered_parts != original
    tampered = tampered_parts.hc1()

    assert not hc1_verifies(tampered, dscs[signed.kid]), "pycose accepts a tampered certificate"
    verdict = verify_hc1(tampered, trust)
    assert not verdict.ok
    assert verdict.reason == reason, verdict.message


@ALGS
def test_kid_of_the_other_dsc_is_an_alg_key_mismatch(
    fresh: dict[AlgValue, pb.Signed],
    dscs: dict[bytes, x509.Certificate],
    trust: TrustStore,
    alg: AlgValue,
) -> None:
    signed = fresh[alg]
    (other_kid,) = [kid for kid in dscs if kid != signed.kid]
    parts = CoseParts.of(signed.hc1)
    tampered = parts.with_protected({1: COSE_ALG[alg], 4: other_kid}).hc1()

    assert not hc1_verifies(tampered, dscs[signed.kid])
    # pycose cannot even try the other DSC: its key is of the other type than the alg needs
    with pytest.raises(PycoseDidNotCheck):
        hc1_verifies(tampered, dscs[other_kid])
    verdict = verify_hc1(tampered, trust)
    assert verdict.reason == "alg_key_mismatch", verdict.message


# --- item errors --------------------------------------------------------------------------------


def _padded(payload: Any, length: int) -> str:
    """The payload as ASCII JSON padded with whitespace to exactly ``length`` characters."""
    text = to_json(payload, ascii_only=True)
    assert len(text) <= length
    return text + " " * (length - len(text))


def test_mixed_batch_gives_one_result_per_item_in_order(
    appliance: Appliance, dscs: dict[bytes, x509.Certificate], trust: TrustStore
) -> None:
    good = vaccination_payloads(3, seed=11)
    both = copy.deepcopy(good[0])
    both["t"] = copy.deepcopy(TEST_PAYLOAD["t"])
    cases: list[tuple[str, str, str | None]] = [  # id, payload_json, expected error code
        ("good-0", to_json(good[0]), None),
        ("not-json", '{"ver": "1.3.0", "v": [', "json"),
        ("array", to_json([good[1]]), "type"),
        ("v-and-t", to_json(both), "group"),
        ("at-limit", _padded(good[1], 16384), None),
        ("over-limit", _padded(good[1], 16385), "too_large"),
        ("empty", "", "json"),
        ("good-2", to_json(good[2]), None),
    ]
    request = pb.SignBatchRequest(
        items=[pb.SignItem(id=item_id, payload_json=text) for item_id, text, _ in cases]
    )
    response = stub(appliance.address).SignBatch(request, timeout=60)

    assert [r.id for r in response.results] == [item_id for item_id, _, _ in cases]
    expected_payloads = {"good-0": good[0], "at-limit": good[1], "good-2": good[2]}
    for result, (item_id, _, code) in zip(response.results, cases, strict=True):
        if code is None:
            assert result.HasField("signed"), (item_id, result.rejected)
            check_signed(
                result.signed,
                expected_payloads[item_id],
                pb.ALGORITHM_ES256,
                dscs,
                trust,
            )
            continue
        assert result.HasField("rejected"), item_id
        assert [e.code for e in result.rejected.errors] == [code], item_id
        (error,) = result.rejected.errors
        assert error.path == "", item_id  # the whole payload (RFC 6901)
        assert error.message, item_id
    over = response.results[5].rejected.errors[0]
    assert "16385" in over.message and "16384" in over.message


# Objects with exactly one of v / t / r that are no DCC at all: each must be refused with its
# errors at their JSON pointers (before d1f88f3 wired validate_payload in, these were signed).
NOT_A_DCC: dict[str, tuple[str, set[tuple[str, str]]]] = {
    "v is a string": ('{"v": "x"}', {("type", "/v"), ("required", "/nam"), ("required", "/dob")}),
    "empty entry": (
        '{"ver": "1.3.0", "v": [{}]}',
        {("required", "/nam"), ("required", "/dob"), ("required", "/v/0/ci")},
    ),
    "nested 1000 deep": ('{"v": ' + "[" * 1000 + "]" * 1000 + "}", {("type", "/v/0")}),
}


@pytest.mark.parametrize("name", list(NOT_A_DCC))
def test_payload_that_is_no_dcc_is_rejected(appliance: Appliance, name: str) -> None:
    text, expected = NOT_A_DCC[name]
    result = sign_one(appliance.address, text)
    assert result.HasField("rejected"), "signed an object that is no DCC"
    found = {(e.code, e.path) for e in result.rejected.errors}
    assert expected <= found, found
    assert all(e.message for e in result.rejected.errors)


def test_batch_within_both_limits_is_answered(appliance: Appliance) -> None:
    """300 items at the 16384-byte payload limit (4.9 MB) fit in one request."""
    payloads = vaccination_payloads(300, seed=13)
    request = pb.SignBatchRequest(
        items=[
            pb.SignItem(id=str(i), payload_json=_padded(p, 16384)) for i, p in enumerate(payloads)
        ]
    )
    response = stub(appliance.address).SignBatch(request, timeout=120)
    assert len(response.results) == 300
    assert all(r.HasField("signed") for r in response.results)


def test_batch_over_max_batch_is_refused_whole(appliance: Appliance) -> None:
    signer = stub(appliance.address)
    request = pb.SignBatchRequest(items=items(vaccination_payloads(1001, seed=3), "max"))
    with pytest.raises(grpc.RpcError) as raised:
        signer.SignBatch(request, timeout=60)
    error = raised.value
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "1001" in (error.details() or "")

    # The same channel (so the same worker) still signs, and so does a full batch of 1000.
    after = signer.SignBatch(pb.SignBatchRequest(items=request.items[:1000]), timeout=120)
    assert len(after.results) == 1000
    assert all(r.HasField("signed") for r in after.results)


# --- streaming ----------------------------------------------------------------------------------


def test_sign_stream_answers_every_batch_in_order(appliance: Appliance, trust: TrustStore) -> None:
    payloads = [to_json(p) for p in vaccination_payloads(100, seed=21)]

    def requests() -> Iterator[pb.SignBatchRequest]:
        for b in range(30):
            yield pb.SignBatchRequest(
                items=[pb.SignItem(id=f"{b}/{i}", payload_json=p) for i, p in enumerate(payloads)]
            )

    responses = list(stub(appliance.address).SignStream(requests(), timeout=300))

    assert len(responses) == 30
    for b, response in enumerate(responses):
        assert [r.id for r in response.results] == [f"{b}/{i}" for i in range(100)]
        for result in response.results:
            assert result.HasField("signed"), (result.id, result.rejected)
            assert verify_hc1(result.signed.hc1, trust).ok


# --- trust list, health, reflection -----------------------------------------------------------


def test_trust_list_names_both_active_dscs(appliance: Appliance) -> None:
    entries = appliance.trust_list()
    now = time.time()

    assert len(entries) == 2
    assert sorted(e.alg for e in entries) == [pb.ALGORITHM_ES256, pb.ALGORITHM_PS256]
    for entry in entries:
        certificate = x509.load_der_x509_certificate(entry.certificate_der)
        assert entry.state == pb.KEY_STATE_ACTIVE
        assert list(entry.certificate_types) == [
            pb.CERTIFICATE_TYPE_VACCINATION,
            pb.CERTIFICATE_TYPE_TEST,
            pb.CERTIFICATE_TYPE_RECOVERY,
        ]
        assert entry.kid == kid_of_der(entry.certificate_der)
        assert entry.not_before < now < entry.not_after
        assert entry.not_before == int(certificate.not_valid_before_utc.timestamp())
        assert entry.not_after == int(certificate.not_valid_after_utc.timestamp())
        assert entry.subject == certificate.subject.rfc4514_string()
        assert entry.label
    assert len({e.label for e in entries}) == 2


@pytest.mark.parametrize("service", ["", SERVICE])
def test_health_is_serving(appliance: Appliance, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel(appliance.address))
    response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_signer_service(appliance: Appliance) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel(appliance.address))
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(reflection.ServerReflectionInfo(iter([request]), timeout=30))
    names = {s.name for s in response.list_services_response.service}
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_count_signed_items_and_signatures_per_kid(appliance: Appliance) -> None:
    kid_b64 = {e.alg: base64.b64encode(e.kid).decode() for e in appliance.trust_list()}
    before = scrape(appliance.metrics_port)
    signer = stub(appliance.address)
    counts = {pb.ALGORITHM_ES256: 40, pb.ALGORITHM_PS256: 10}
    for alg, count in counts.items():
        response = signer.SignBatch(
            pb.SignBatchRequest(items=items(vaccination_payloads(count, seed=5), "m"), alg=alg),
            timeout=60,
        )
        assert all(r.HasField("signed") for r in response.results)
    bad = signer.SignBatch(pb.SignBatchRequest(items=[pb.SignItem(id="bad", payload_json="{")]))
    assert bad.results[0].rejected.errors[0].code == "json"
    after = scrape(appliance.metrics_port)

    signed = "hcert_items_total"
    grown = sample(after, signed, outcome="signed") - sample(before, signed, outcome="signed")
    assert grown >= sum(counts.values())
    rejected = sample(after, signed, outcome="rejected") - sample(
        before, signed, outcome="rejected"
    )
    assert rejected >= 1
    assert sample(after, "hcert_item_errors_total", code="json") >= 1

    kids = {labels["kid"] for labels in series(after, "hcert_signatures_total")}
    assert set(kid_b64.values()) <= kids
    for alg, count in counts.items():
        kid = kid_b64[alg]
        grew = sample(after, "hcert_signatures_total", kid=kid) - sample(
            before, "hcert_signatures_total", kid=kid
        )
        assert grew >= count, (alg, grew)


# --- garbage ----------------------------------------------------------------------------------


def _check_answers(
    appliance: Appliance, trust: TrustStore, sent: list[pb.SignItem]
) -> pb.SignBatchResponse:
    response: pb.SignBatchResponse = stub(appliance.address).SignBatch(
        pb.SignBatchRequest(items=sent), timeout=60
    )
    assert [r.id for r in response.results] == [i.id for i in sent]
    for result in response.results:
        if result.HasField("signed"):
            assert result.signed.hc1.startswith("HC1:")
        else:
            assert result.rejected.errors
            assert all(e.code and e.message for e in result.rejected.errors)
    return response


garbage_text = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(st.characters(codec="utf-8"), max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=20,
    ).map(lambda v: to_json({"v": v})),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(garbage_text, min_size=1, max_size=10))
def test_random_payloads_get_one_answer_each(
    appliance: Appliance, trust: TrustStore, payloads: list[str]
) -> None:
    sent = [pb.SignItem(id=f"g{i}", payload_json=p) for i, p in enumerate(payloads)]
    _check_answers(appliance, trust, sent)
    assert all(alive(pid) for pid in appliance.pids), appliance.pids


def test_hostile_ids_and_text_do_not_hurt_the_server(
    appliance: Appliance, trust: TrustStore
) -> None:
    payloads = [to_json(p) for p in vaccination_payloads(7, seed=9)]
    hostile_ids = [
        "x" * 200_000,
        "",
        "\x00\x01\x02",
        "🧪💉 Nguyễn \u202eRTL\u202c 中文",
        "\ufeff" * 100,
        "a\nb\r\nc",
    ]
    sent = [
        pb.SignItem(id=i, payload_json=p) for i, p in zip(hostile_ids, payloads[:-1], strict=True)
    ]
    sent += [
        pb.SignItem(id="nul", payload_json="\x00"),
        pb.SignItem(id="bom", payload_json="\ufeff" + payloads[0]),
        pb.SignItem(id="deep", payload_json="[" * 5000 + "]" * 5000),
        pb.SignItem(id="huge-int", payload_json='{"v": ' + "9" * 5000 + "}"),
        pb.SignItem(id="emoji", payload_json="💉" * 16000),
    ]
    response = _check_answers(appliance, trust, sent)
    for result in response.results[: len(hostile_ids)]:
        assert result.HasField("signed"), result.id[:20]
        assert verify_hc1(result.signed.hc1, trust).ok
    for result in response.results[len(hostile_ids) :]:
        assert result.HasField("rejected"), result.id

    # Afterwards: the server still signs and no worker died (no pid was replaced).
    signed = sign_one(appliance.address, payloads[-1])
    assert signed.HasField("signed")
    assert verify_hc1(signed.signed.hc1, trust).ok
    assert all(alive(pid) for pid in appliance.pids), appliance.pids
