"""Hostile input on every RPC (issue 9 §8) against a real appliance: malformed protobuf,
non-UTF-8, huge strings, deep JSON, hostile CBOR/base45/zlib, absurd options, a bad message in
the middle of a stream, and the fuzz campaign's CI run. Each answer is INVALID_ARGUMENT with a
message naming the problem, or a per-item error; never UNKNOWN or INTERNAL, and the server log
holds no traceback afterwards.

The appliance has hash-only signing on, so SignHash is reached and CWTs with hostile claims can
carry a valid signature of the appliance's own key (``tests.fuzz_inputs.signed_by_appliance``):
Verify and Reissue must then parse them, past the signature check.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import grpc
import psutil
import pytest

from signer.api.v1 import signer_pb2 as pb
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance, wait_serving
from tests.fuzz import FUZZ_CONFIG, run_campaign, without_access_lines
from tests.fuzz_inputs import b45_text, signed_by_appliance
from tests.integration.helpers import TEST_PAYLOAD, channel, sign_one, to_json

pytestmark = pytest.mark.timeout(600)

RAW = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
UNARY = ("SignBatch", "Reissue", "Verify", "SignHash", "GetTrustList")
BATCHES = ("SignBatch", "SignStream", "Reissue", "Verify", "SignHash")

#: A length prefix running past the end: no message type parses it.
TRUNCATED = b"\x0a\xff\xff\xff\xff\x0f"
#: items { id: "\xff\xfe" }: field 1 of the item is a string in every request type.
NON_UTF8 = b"\x0a\x04\x0a\x02\xff\xfe"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Appliance, Path]]:
    """An appliance of its own (hash-only signing on), and its log file."""
    require_softhsm()
    directory = tmp_path_factory.mktemp("hostile")
    running, process = start_appliance(directory, FUZZ_CONFIG)
    try:
        wait_serving(running)
        yield running, directory / "serve.log"
    finally:
        stop_appliance(process)


def call(address: str, rpc: str, raw: bytes) -> tuple[grpc.StatusCode, str, bytes]:
    """One raw call: (status, details, response bytes)."""
    chan = channel(address)
    try:
        if rpc == "SignStream":
            answers = list(chan.stream_stream(f"/hcert.signer.v1.Signer/{rpc}", **RAW)(
                iter([raw]), timeout=60))  # fmt: skip
            return grpc.StatusCode.OK, "", b"".join(answers)
        answer = chan.unary_unary(f"/hcert.signer.v1.Signer/{rpc}", **RAW)(raw, timeout=60)
        return grpc.StatusCode.OK, "", answer
    except grpc.RpcError as e:
        return e.code(), e.details() or "", b""
    finally:
        chan.close()


def batch(rpc: str, items: list[tuple[str, str]], **fields: Any) -> bytes:
    """A request of ``rpc`` with (id, text) items: the payload, HC1 string or digest."""
    if rpc in ("SignBatch", "SignStream"):
        made: Any = pb.SignBatchRequest(
            items=[pb.SignItem(id=i, payload_json=t) for i, t in items], **fields
        )
    elif rpc == "Reissue":
        made = pb.ReissueRequest(items=[pb.ReissueItem(id=i, hc1=t) for i, t in items], **fields)
    elif rpc == "Verify":
        made = pb.VerifyRequest(items=[pb.VerifyItem(id=i, hc1=t) for i, t in items], **fields)
    else:
        made = pb.SignHashRequest(
            items=[pb.HashItem(id=i, digest=t.encode()) for i, t in items], **fields
        )
    data: bytes = made.SerializeToString()
    return data


# -- protobuf --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rpc", "raw"),
    [(rpc, TRUNCATED) for rpc in (*UNARY, "SignStream")]
    # GetTrustListRequest has no fields: there, field 1 is an unknown field and is skipped
    + [(rpc, NON_UTF8) for rpc in BATCHES],
)
def test_a_malformed_message_is_invalid_argument_on_every_rpc(
    hostile: tuple[Appliance, Path], rpc: str, raw: bytes
) -> None:
    code, details, _ = call(hostile[0].address, rpc, raw)
    assert code is grpc.StatusCode.INVALID_ARGUMENT, details
    assert "malformed" in details and "not UTF-8" in details


# -- huge strings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rpc", "code"),
    [
        ("SignBatch", "too_large"),
        ("SignStream", "too_large"),
        ("Reissue", "hc1_too_large"),
        ("SignHash", "digest_length"),
    ],
)
def test_a_huge_item_is_a_per_item_error(
    hostile: tuple[Appliance, Path], rpc: str, code: str
) -> None:
    request = batch(rpc, [("big", "x" * 1_000_000), ("small", "x")])
    if rpc == "SignHash":
        request += pb.SignHashRequest(kid=_kid(hostile[0])).SerializeToString()
    status, details, answer = call(hostile[0].address, rpc, request)
    assert status is grpc.StatusCode.OK, details
    response: Any = (pb.SignHashResponse if rpc == "SignHash" else pb.SignBatchResponse)()
    response.ParseFromString(answer)
    assert [r.id for r in response.results] == ["big", "small"]
    assert response.results[0].rejected.errors[0].code == code


def test_a_huge_hc1_is_too_large_in_verify(hostile: tuple[Appliance, Path]) -> None:
    _, _, answer = call(
        hostile[0].address, "Verify", batch("Verify", [("a", "HC1:" + "Z" * 10**6)])
    )
    (result,) = pb.VerifyResponse.FromString(answer).results
    assert (result.valid, result.reason) == (False, "too_large")


def test_a_message_over_the_size_limit_is_refused_by_grpc(hostile: tuple[Appliance, Path]) -> None:
    """gRPC itself refuses a message past ``grpc.max_receive_message_length`` (max_batch ×
    (max_payload_bytes + 1 KiB)) before any handler runs: RESOURCE_EXHAUSTED, which clients
    already treat as "too much"."""
    code, details, _ = call(
        hostile[0].address, "SignBatch", batch("SignBatch", [("a", "x" * (20 << 20))])
    )
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in details


# -- deep and odd JSON -----------------------------------------------------------------------


#: Payload text → the codes its item may be rejected with (deep JSON that parses is then refused
#: by validation: the DCC's fields are missing or of the wrong type).
ODD_JSON: dict[str, tuple[str, set[str]]] = {
    "deep-array": ("[" * 4000 + "]" * 4000, {"json"}),
    "deep-object": ('{"a":' * 2000 + "1" + "}" * 2000, {"json"}),
    "deep-dcc": ('{"nam": ' * 1100 + "1" + "}" * 1100, {"json"}),  # past orjson's 1024
    "deep-within-limits": ('{"ver": "1.3.0", "nam": ' * 50 + "1" + "}" * 50,
                           {"type", "required", "group"}),
    "too-large": ("[" * 9000 + "]" * 9000, {"too_large"}),
    "huge-float": ("1e999999", {"json"}),
    "huge-int": ("123456789012345678901234567890123456789", {"json", "type"}),
    "lone-surrogate": ('"\\ud800"', {"json", "type"}),
    "nan": ('{"ver": NaN}', {"json"}),
    "empty": ("", {"json"}),
    "array": ("[1, 2]", {"type"}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ODD_JSON))
def test_deep_and_odd_json_is_a_per_item_error(hostile: tuple[Appliance, Path], case: str) -> None:
    payload, codes = ODD_JSON[case]
    result = sign_one(hostile[0].address, payload)
    assert result.WhichOneof("outcome") == "rejected"
    assert {e.code for e in result.rejected.errors} <= codes, result
    assert result.rejected.errors


def test_hostile_values_inside_a_payload_are_per_item_errors(
    hostile: tuple[Appliance, Path],
) -> None:
    values: list[Any] = [2**70, -(2**63), 1e308, None, True, [], {}, [[[[]]]], "\u202e\u0000"]
    payloads = []
    for index, value in enumerate(values):
        payload = json.loads(json.dumps(TEST_PAYLOAD))
        payload["t"][0]["ci"] = f"URN:UVCI:01:VN:HOSTILE{index}"
        payload["t"][0]["sc"] = value
        payload["nam"]["fn"] = value
        payloads.append(payload)
    request = batch("SignBatch", [(str(i), to_json(p)) for i, p in enumerate(payloads)])
    status, details, answer = call(hostile[0].address, "SignBatch", request)
    assert status is grpc.StatusCode.OK, details
    results = pb.SignBatchResponse.FromString(answer).results
    assert [r.id for r in results] == [str(i) for i in range(len(values))]
    assert all(r.WhichOneof("outcome") == "rejected" for r in results)


# -- hostile CBOR, base45, zlib in Verify and Reissue ----------------------------------------

_GOOD = json.loads(json.dumps(TEST_PAYLOAD))
_EXP = 2**40

#: (CWT payload bytes, the Verify reason): each carries a valid signature of the appliance.
SIGNED_CLAIMS: dict[str, tuple[bytes, str]] = {
    "dcc-bytes-key": (cbor2.dumps({1: "VN", 6: 1, 4: _EXP, -260: {1: {**_GOOD, b"k": 1}}}),
                      "hcert_structure"),
    "dcc-int-key": (cbor2.dumps({1: "VN", 6: 1, 4: _EXP, -260: {1: {**_GOOD, 7: "x"}}}),
                    "hcert_structure"),
    "dcc-int-over-64-bits": (cbor2.dumps({1: "VN", 6: 1, 4: _EXP,
                                          -260: {1: {**_GOOD, "ver": 2**100}}}),
                             "hcert_structure"),
    "dcc-nan": (cbor2.dumps({1: "VN", 6: 1, 4: _EXP, -260: {1: {**_GOOD, "dob": float("nan")}}}),
                "hcert_structure"),
    "dcc-unknown-tag": (
        cbor2.dumps({1: "VN", 6: 1, 4: _EXP, -260: {1: {**_GOOD, "t": [cbor2.CBORTag(9999, 1)]}}}),
        "hcert_structure",
    ),
    "dcc-date-tag-past-the-calendar": (
        cbor2.dumps({1: "VN", 6: 1, 4: _EXP, -260: {1: {**_GOOD, "sc": cbor2.CBORTag(1, 2**70)}}}),
        "cwt_structure",
    ),
    "dcc-not-a-map": (cbor2.dumps({1: "VN", 6: 1, 4: _EXP, -260: {1: [_GOOD]}}),
                      "hcert_structure"),
    "iat-past-int64": (cbor2.dumps({1: "VN", 6: 2**63, 4: 2**64, -260: {1: _GOOD}}),
                       "cwt_structure"),
    "iat-negative-over-64-bits": (cbor2.dumps({1: "VN", 6: -(2**70), 4: _EXP, -260: {1: _GOOD}}),
                                  "cwt_structure"),
    "exp-float-past-int64": (cbor2.dumps({1: "VN", 6: 1, 4: 1e300, -260: {1: _GOOD}}),
                             "cwt_structure"),
    "iat-infinity": (cbor2.dumps({1: "VN", 6: float("inf"), 4: _EXP, -260: {1: _GOOD}}),
                     "cwt_structure"),
    "iat-true": (cbor2.dumps({1: "VN", 6: True, 4: _EXP, -260: {1: _GOOD}}), "cwt_structure"),
    "iss-bytes": (cbor2.dumps({1: b"VN", 6: 1, 4: _EXP, -260: {1: _GOOD}}), "cwt_structure"),
    "claims-not-a-map": (cbor2.dumps([1, 2, 3]), "cwt_structure"),
    "nesting-past-limit": (b"\x81" * 200 + b"\x00", "cwt_structure"),
    "repeated-key": (b"\xa2\x01\x62VN\x01\x62VN", "cwt_structure"),
    "truncated": (b"\xa4\x01", "cwt_structure"),
    "trailing-bytes": (cbor2.dumps({1: "VN", -260: {1: _GOOD}}) + b"\x00", "cwt_structure"),
}  # fmt: skip


def _hc1_of(cose: bytes) -> str:
    return "HC1:" + b45_text(zlib.compress(cose, 9))


#: (HC1 text, the Verify reason): structure broken before any signature check.
UNSIGNED: dict[str, tuple[str, str]] = {
    "tag-past-64-bits": (_hc1_of(b"\xdb" + b"\xff" * 8 + b"\x00"), "cose_structure"),
    "cose-nesting": (_hc1_of(b"\xd2" + b"\x81" * 20000), "cose_structure"),
    "protected-non-text-keys": (_hc1_of(cbor2.dumps(cbor2.CBORTag(18, [
        cbor2.dumps({b"x": 1, 2**70: 3}), {}, b"", b""]))), "unsupported_alg"),
    "alg-over-64-bits": (_hc1_of(cbor2.dumps(cbor2.CBORTag(18, [
        cbor2.dumps({1: 2**70, 4: b"12345678"}), {}, b"", b""]))), "unsupported_alg"),
    "kid-an-integer": (_hc1_of(cbor2.dumps(cbor2.CBORTag(18, [
        b"", {4: 2**70, 1: -7}, b"", b""]))), "cose_structure"),
    "zlib-bomb": (_hc1_of(b"\0" * (8 << 20)), "too_large"),
    "zlib-truncated": ("HC1:" + b45_text(zlib.compress(b"x" * 100)[:-3]), "zlib"),
    "not-zlib": ("HC1:" + b45_text(b"\x00\x01\x02\x03"), "zlib"),
    "base45-out-of-range": ("HC1:GGW", "base45"),
    "base45-dangling": ("HC1:::::", "base45"),
    "non-ascii": ("HC1:\u0100\u0100", "base45"),
    "nul": ("HC1:\x00\x00", "base45"),
    "prefix": ("HC2:6BF", "prefix"),
}  # fmt: skip


@pytest.fixture(scope="module")
def signed_hostile(hostile: tuple[Appliance, Path]) -> dict[str, tuple[str, str]]:
    names = list(SIGNED_CLAIMS)
    _, texts = signed_by_appliance(hostile[0].address, [SIGNED_CLAIMS[n][0] for n in names])
    return {name: (text, SIGNED_CLAIMS[name][1]) for name, text in zip(names, texts, strict=True)}


@pytest.mark.parametrize("rpc", ["Verify", "Reissue"])
def test_hostile_cbor_base45_and_zlib_are_per_item_errors(
    hostile: tuple[Appliance, Path], signed_hostile: dict[str, tuple[str, str]], rpc: str
) -> None:
    cases = {**signed_hostile, **UNSIGNED}
    names = list(cases)
    request = batch(rpc, [(name, cases[name][0]) for name in names])
    status, details, answer = call(hostile[0].address, rpc, request)
    assert status is grpc.StatusCode.OK, details
    if rpc == "Verify":
        got = {r.id: r.reason for r in pb.VerifyResponse.FromString(answer).results}
        assert got == {name: reason for name, (_, reason) in cases.items()}
    else:
        results = pb.SignBatchResponse.FromString(answer).results
        codes = {r.id: [e.code for e in r.rejected.errors] for r in results}
        assert codes == {name: [f"hc1_{reason}"] for name, (_, reason) in cases.items()}


# -- absurd option values --------------------------------------------------------------------

_GOOD_ITEM = [("a", to_json(TEST_PAYLOAD))]


@pytest.mark.parametrize(
    ("rpc", "fields", "message"),
    [
        ("SignBatch", {"alg": 99}, "alg 99 is not an Algorithm"),
        ("SignStream", {"alg": -1}, "alg -1 is not an Algorithm"),
        ("Reissue", {"alg": 3}, "alg 3 is not an Algorithm"),
        ("SignBatch", {"output": pb.OutputOptions(qr_png=True, qr_scale=1500)},
         "output.qr_scale 1500 is over the limit of 32"),
        ("SignStream", {"output": pb.OutputOptions(qr_svg=True, qr_scale=2**32 - 1)},
         "output.qr_scale 4294967295 is over the limit of 32"),
        ("Reissue", {"output": pb.OutputOptions(qr_png=True, qr_scale=33)},
         "output.qr_scale 33 is over the limit of 32"),
        ("Verify", {"at": 2**62}, "at 4611686018427387904 is not an instant"),
        ("Verify", {"at": -1}, "at -1 is not an instant"),
        ("Verify", {"at": 253402300800}, "at 253402300800 is not an instant"),
    ],
)  # fmt: skip
def test_absurd_option_values_are_invalid_argument(
    hostile: tuple[Appliance, Path], rpc: str, fields: dict[str, Any], message: str
) -> None:
    code, details, _ = call(hostile[0].address, rpc, batch(rpc, _GOOD_ITEM, **fields))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(message) or f": {message}" in details, details


def test_the_last_second_of_9999_is_a_verification_time(hostile: tuple[Appliance, Path]) -> None:
    hc1 = sign_one(hostile[0].address, to_json(TEST_PAYLOAD)).signed.hc1
    _, _, answer = call(
        hostile[0].address, "Verify", batch("Verify", [("a", hc1)], at=253402300799)
    )
    (result,) = pb.VerifyResponse.FromString(answer).results
    assert (result.valid, result.reason) == (False, "expired")


def test_qr_codes_are_rendered_outside_the_workers(hostile: tuple[Appliance, Path]) -> None:
    """The workers only sign (their one thread is the HSM thread); the QR codes come from a
    process of the front's own pool, started for the first request that asks for one."""
    appliance = hostile[0]
    payload = json.loads(json.dumps(TEST_PAYLOAD))
    payload["t"][0]["ci"] = "URN:UVCI:01:VN:QRPOOL1"
    request = batch("SignBatch", [("q", to_json(payload))],
                    output=pb.OutputOptions(qr_png=True, qr_svg=True, qr_scale=2))  # fmt: skip
    status, details, answer = call(appliance.address, "SignBatch", request)
    assert status is grpc.StatusCode.OK, details
    (result,) = pb.SignBatchResponse.FromString(answer).results
    assert result.signed.qr_png.startswith(b"\x89PNG") and result.signed.qr_svg.startswith("<svg")
    front = psutil.Process(psutil.Process(appliance.pids[0]).ppid())
    renderers = [
        child for child in front.children() if child.pid not in appliance.pids
        and "multiprocessing" in " ".join(child.cmdline())
    ]  # fmt: skip
    assert renderers, [c.cmdline() for c in front.children()]


# -- SignStream ------------------------------------------------------------------------------


def test_a_malformed_message_mid_stream_ends_it_after_the_earlier_batches(
    hostile: tuple[Appliance, Path],
) -> None:
    good = batch("SignStream", _GOOD_ITEM, validate_only=True)
    sent = [good, good, good, NON_UTF8, good]
    chan = channel(hostile[0].address)
    answers: list[bytes] = []
    with pytest.raises(grpc.RpcError) as caught:
        for answer in chan.stream_stream("/hcert.signer.v1.Signer/SignStream", **RAW)(
            iter(sent), timeout=60
        ):
            answers.append(answer)
    chan.close()
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert details.startswith("message 4 of this stream: malformed SignStream request")
    assert details.endswith("the 3 batch(es) before it were answered")
    assert len(answers) == 3
    assert all(pb.SignBatchResponse.FromString(a).results[0].HasField("valid") for a in answers)


@pytest.mark.parametrize(
    "fields", [{"alg": 7}, {"output": pb.OutputOptions(qr_png=True, qr_scale=99)}]
)
def test_an_absurd_option_mid_stream_ends_it_with_a_clear_status(
    hostile: tuple[Appliance, Path], fields: dict[str, Any]
) -> None:
    good = batch("SignStream", _GOOD_ITEM, validate_only=True)
    chan = channel(hostile[0].address)
    answers: list[bytes] = []
    with pytest.raises(grpc.RpcError) as caught:
        for answer in chan.stream_stream("/hcert.signer.v1.Signer/SignStream", **RAW)(
            iter([good, batch("SignStream", _GOOD_ITEM, **fields), good]), timeout=60
        ):
            answers.append(answer)
    chan.close()
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("message 2 of this stream: ")
    assert len(answers) == 1


# -- the fuzz campaign and the log -----------------------------------------------------------


def test_fuzz_campaign_ci_run(hostile: tuple[Appliance, Path]) -> None:
    """2 000 generated requests across all RPCs (the full campaign: docs/fuzz.md)."""
    appliance, log = hostile
    report = run_campaign(
        appliance.address, appliance.metrics_port, 2000, seed=20261206, max_seconds=120,
        log_file=log,
    )  # fmt: skip
    assert report.requests == 2000, report.text()
    assert report.failures() == [], report.text()
    assert report.counts.total() == 2000
    assert sum(n for (_, code), n in report.counts.items() if code == "OK") > 500, report.text()


def test_the_log_holds_no_traceback_after_all_of_it(hostile: tuple[Appliance, Path]) -> None:
    """Runs last in this module: everything above left no traceback and few lines beside the
    access log's one line per RPC."""
    text = hostile[1].read_text(errors="replace")
    assert "Traceback" not in text
    rest = without_access_lines(text)
    assert len(rest) < 16 << 10, rest[-4000:]


def _kid(appliance: Appliance) -> bytes:
    return next(e.kid for e in appliance.trust_list()
                if e.state == pb.KEY_STATE_ACTIVE and e.alg == pb.ALGORITHM_ES256)  # fmt: skip
