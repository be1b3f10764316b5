"""Metrics and logs of a real appliance (issue 11 §1, §2): mutual TLS, a policy naming one
client, JSON logs (a config file without [log]), one worker with the test fault injection on (so
the worker writes a line too). Every RPC is in grpc_server_* by method and code and has one log
line; client labels are the policy's names or ``other``; every line of the output is JSON and
carries no payload text, name, UVCI or PIN."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signer.api.v1 import signer_pb2 as pb
from signer.api.v1 import signer_pb2_grpc as pb_grpc
from signer.client import channel as tls_channel
from signer.devtls import DevTls
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.integration.helpers import TEST_PAYLOAD, Samples, mutual_tls, sample, scrape, to_json

SIGNER = "hcert.signer.v1.Signer"
UVCI = TEST_PAYLOAD["t"][0]["ci"]
NAMES = ("Trần", "Văn Đức", "TRAN", "VAN<DUC")


@pytest.fixture(scope="module")
def observed(
    tmp_path_factory: pytest.TempPathFactory, dev_tls: DevTls
) -> Iterator[tuple[Appliance, Samples, list[dict[str, Any]]]]:
    """The appliance driven through the calls below, its scrape, and its log lines once it
    stopped."""
    require_softhsm()
    config = f"""{mutual_tls(dev_tls)}
[policy]
default = "none"

[[policy.clients]]
name = "issuer-a"
roles = ["issuer"]
"""
    directory = tmp_path_factory.mktemp("observed")
    (directory / "faults").mkdir()
    running, process = start_appliance(
        directory,
        config,
        workers=1,
        key_algorithms=["ES256"],
        env={"HCERT_TEST_HSM_FAULTS": str(directory / "faults")},
    )
    try:
        _wait_serving(running, dev_tls)
        _drive(running, dev_tls)
        samples = scrape(running.metrics_port)
    finally:
        stop_appliance(process)
    lines = (directory / "serve.log").read_text(encoding="utf-8").splitlines()
    yield running, samples, [_parsed(line) for line in lines]


def _parsed(line: str) -> dict[str, Any]:
    try:
        parsed: dict[str, Any] = json.loads(line)
    except json.JSONDecodeError:
        raise AssertionError(f"a log line that is not JSON: {line!r}") from None
    return parsed


def _stub(appliance: Appliance, tls: DevTls, client: str) -> pb_grpc.SignerStub:
    return pb_grpc.SignerStub(tls_channel(appliance.address, tls.client_tls(client)))


def _wait_serving(appliance: Appliance, tls: DevTls) -> None:
    """conftest's wait_serving, over mutual TLS."""
    channel = tls_channel(appliance.address, tls.client_tls("issuer-a"))
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 120
    serving = health_pb2.HealthCheckResponse.SERVING
    while health.Check(health_pb2.HealthCheckRequest(), timeout=10).status != serving:
        assert time.monotonic() < deadline, "the appliance did not turn SERVING"
        time.sleep(0.1)


def _drive(appliance: Appliance, tls: DevTls) -> None:
    issuer = _stub(appliance, tls, "issuer-a")
    items = [
        pb.SignItem(id="named", payload_json=to_json(TEST_PAYLOAD)),
        pb.SignItem(id="broken", payload_json="{"),
    ]
    response = issuer.SignBatch(
        pb.SignBatchRequest(items=items), timeout=60, metadata=(("x-request-id", "req-test-1"),)
    )
    assert [r.WhichOneof("outcome") for r in response.results] == ["signed", "rejected"]
    # a request id that is no id is replaced; the refusal's trailer names the one used
    with pytest.raises(grpc.RpcError) as malformed:
        issuer.SignBatch(
            pb.SignBatchRequest(items=[pb.SignItem(id="x", payload_json="{}")] * 2000),
            timeout=60,
            metadata=(("x-request-id", "has spaces and " + "x" * 100),),
        )
    assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # over max_batch
    trailer = dict(malformed.value.trailing_metadata() or ())
    assert len(trailer["x-request-id"]) == 16, trailer
    # reader-b has a valid certificate but the policy does not name it: role none, label other
    stranger = _stub(appliance, tls, "reader-b")
    with pytest.raises(grpc.RpcError) as denied:
        stranger.GetTrustList(pb.GetTrustListRequest(), timeout=30)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert issuer.GetTrustList(pb.GetTrustListRequest(), timeout=30).entries


def test_every_rpc_is_counted_by_method_and_code(observed: Any) -> None:
    _, samples, _ = observed
    handled = "grpc_server_handled_total"
    unary = {"grpc_type": "UNARY", "grpc_service": SIGNER}
    assert sample(samples, handled, **unary, grpc_method="SignBatch", grpc_code="OK") == 1
    assert sample(samples, handled, **unary, grpc_method="SignBatch", grpc_code="INVALID_ARGUMENT")
    assert (
        sample(samples, handled, **unary, grpc_method="GetTrustList", grpc_code="PERMISSION_DENIED")
        == 1
    )
    assert sample(samples, handled, **unary, grpc_method="GetTrustList", grpc_code="OK") == 1
    health = {"grpc_type": "UNARY", "grpc_service": "grpc.health.v1.Health"}
    assert sample(samples, handled, **health, grpc_method="Check", grpc_code="OK") >= 1
    assert (
        sample(samples, "grpc_server_started_total", **unary, grpc_method="SignBatch")
        == sample(samples, handled, **unary, grpc_method="SignBatch", grpc_code="OK") + 1
    )
    seconds = "grpc_server_handling_seconds_count"
    assert sample(samples, seconds, **unary, grpc_method="SignBatch", grpc_code="OK") == 1


def test_client_labels_are_the_policys_names_or_other(observed: Any) -> None:
    _, samples, _ = observed
    assert sample(samples, "hcert_client_items_total", client="issuer-a") == 2
    assert sample(samples, "hcert_client_refusals_total", client="other", reason="permission") == 1
    assert (
        sample(samples, "hcert_client_refusals_total", client="issuer-a", reason="over_max_batch")
        == 1
    )
    values = {v for (_, labels) in samples for _, v in labels}
    assert "reader-b" not in values  # a client the policy does not name never becomes a label
    assert not any(name in v for v in values for name in (UVCI, *NAMES))


def test_chunks_batches_ledger_sessions_processes_and_build(observed: Any) -> None:
    _, samples, _ = observed
    assert sample(samples, "hcert_chunk_queue_seconds_count") >= 1
    assert sample(samples, "hcert_chunk_seconds_count") >= 1
    assert sample(samples, "hcert_batch_items_count", rpc="SignBatch") == 2
    assert sample(samples, "hcert_batch_items_bucket", rpc="SignBatch", le="1.0") == 0
    assert sample(samples, "hcert_batch_items_bucket", rpc="SignBatch", le="4.0") == 1
    assert sample(samples, "hcert_ledger_write_seconds_count") >= 1
    assert sample(samples, "hcert_hsm_sessions_configured") == 1
    assert sample(samples, "hcert_hsm_sessions_open") == 1
    for role, worker in (("front", ""), ("worker", "0")):
        assert sample(samples, "process_resident_memory_bytes", role=role, worker=worker) > 10e6
        assert sample(samples, "process_cpu_seconds_total", role=role, worker=worker) > 0
        assert sample(samples, "process_start_time_seconds", role=role, worker=worker) > 1.7e9
    (build,) = [dict(labels) for (name, labels) in samples if name == "hcert_build_info"]
    assert build["version"] and build["python"].count(".") == 2 and build["grpcio"]


def test_one_json_line_per_rpc_with_its_fields(observed: Any) -> None:
    _, _, lines = observed
    rpcs = [line for line in lines if line["logger"] == "signer.rpc"]
    signer_rpcs = [line for line in rpcs if line["service"] == SIGNER]
    assert [(line["method"], line["code"]) for line in signer_rpcs] == [
        ("SignBatch", "OK"),
        ("SignBatch", "INVALID_ARGUMENT"),
        ("GetTrustList", "PERMISSION_DENIED"),
        ("GetTrustList", "OK"),
    ]
    first = signer_rpcs[0]
    assert first["request_id"] == "req-test-1"
    assert (first["client"], first["items"], first["role"]) == ("issuer-a", 2, "front")
    assert 0 < first["duration_seconds"] < 60
    assert signer_rpcs[1]["items"] == 2000 and len(signer_rpcs[1]["request_id"]) == 16
    assert signer_rpcs[2]["client"] == "reader-b"  # the log names who was refused
    assert len({line["request_id"] for line in rpcs}) == len(rpcs)
    assert all({"time", "level", "message", "pid"} <= line.keys() for line in lines)


def test_workers_log_in_the_same_format(observed: Any) -> None:
    _, _, lines = observed
    workers = [line for line in lines if line["role"] == "worker"]
    assert any("TEST FAULT INJECTION ENABLED" in line["message"] for line in workers), workers
    assert {line["worker"] for line in workers} == {0}


def test_no_payload_name_uvci_or_pin_in_the_log(observed: Any) -> None:
    appliance, _, _ = observed
    text = (appliance.directory / "serve.log").read_text(encoding="utf-8")
    pin = (appliance.directory / "dev" / "user.pin").read_text().strip()
    for secret in (UVCI, *NAMES, "payload_json", pin):
        assert secret not in text, secret
    assert json.dumps(TEST_PAYLOAD["t"][0]["tc"], ensure_ascii=False)[1:-1] not in text


def test_the_client_identity_in_the_log_is_the_tls_name(observed: Any) -> None:
    _, _, lines = observed
    clients = {line["client"] for line in lines if line["logger"] == "signer.rpc"}
    assert clients == {"issuer-a", "reader-b"}
