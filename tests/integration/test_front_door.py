"""The front door (issue 7) against a real appliance: mutual TLS, identity-based policy, per-type
refusal, quotas with RetryInfo, one port per appliance, one channel over every worker, drain.

Every appliance here is a real ``signer serve`` subprocess with a SoftHSM token; TLS is real
(certificates from ``signer dev-tls``), and every signed certificate is checked with pycose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import psutil
import pytest
from cryptography import x509
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from signer.api.v1 import signer_pb2 as pb
from signer.api.v1 import signer_pb2_grpc as pb_grpc
from signer.bench.payloads import vaccination_payloads
from signer.client import channel as tls_channel
from signer.devtls import DevTls
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import TEST_PAYLOAD, mutual_tls, stub, to_json

SERVICE = "hcert.signer.v1.Signer"


@pytest.fixture(autouse=True)
def _softhsm() -> None:
    require_softhsm()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, dev_tls: DevTls) -> Iterator[Appliance]:
    """An appliance that speaks only mutual TLS, with a policy that names two clients."""
    config = f"""{mutual_tls(dev_tls)}
[policy]
default = "none"

[[policy.clients]]
name = "issuer-a"
roles = ["issuer"]
types = ["vaccination"]
items_per_second = 100.0
burst = 1000

[[policy.clients]]
name = "reader-b"
roles = ["reader"]
"""
    running, process = start_appliance(tmp_path_factory.mktemp("mtls"), config, workers=2)
    try:
        yield running
    finally:
        stop_appliance(process)


def _signer(appliance: Appliance, tls: DevTls, client: str | None) -> pb_grpc.SignerStub:
    return pb_grpc.SignerStub(tls_channel(appliance.address, tls.client_tls(client)))


def _batch(prefix: str, payloads: Sequence[object]) -> pb.SignBatchRequest:
    return pb.SignBatchRequest(
        items=[
            pb.SignItem(id=f"{prefix}{i}", payload_json=to_json(p)) for i, p in enumerate(payloads)
        ]
    )


def _validate_only(request: pb.SignBatchRequest) -> pb.SignBatchRequest:
    request.validate_only = True
    return request


def test_issuer_signs_over_mutual_tls_and_may_sign_only_its_types(
    mtls: Appliance, dev_tls: DevTls
) -> None:
    signer = _signer(mtls, dev_tls, "issuer-a")
    trust = {e.kid: e for e in signer.GetTrustList(pb.GetTrustListRequest(), timeout=30).entries}
    payloads: list[object] = [*vaccination_payloads(2, seed=71), TEST_PAYLOAD]
    response = signer.SignBatch(_batch("a", payloads), timeout=60)
    assert [r.id for r in response.results] == ["a0", "a1", "a2"]
    for result in response.results[:2]:
        assert result.HasField("signed"), result.rejected
        dsc = x509.load_der_x509_certificate(trust[result.signed.kid].certificate_der)
        assert hc1_verifies(result.signed.hc1, dsc)
    refused = response.results[2]
    assert [(e.code, e.path) for e in refused.rejected.errors] == [("type_not_allowed", "/t")]
    checked = signer.SignBatch(_validate_only(_batch("c", payloads)), timeout=60).results
    assert [r.WhichOneof("outcome") for r in checked] == ["valid", "valid", "rejected"]
    assert [e.code for e in checked[2].rejected.errors] == ["type_not_allowed"]


def test_a_client_gets_only_the_rpcs_of_its_role(mtls: Appliance, dev_tls: DevTls) -> None:
    reader = _signer(mtls, dev_tls, "reader-b")
    assert reader.GetTrustList(pb.GetTrustListRequest(), timeout=30).entries
    for call, request in (
        (reader.SignBatch, _batch("r", vaccination_payloads(1, seed=72))),
        (reader.SignBatch, _validate_only(_batch("v", vaccination_payloads(1, seed=72)))),
        (reader.Reissue, pb.ReissueRequest(items=[pb.ReissueItem(id="x", hc1="HC1:")])),
        (reader.SignHash, pb.SignHashRequest(items=[pb.HashItem(id="h", digest=b"0" * 32)])),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=30)
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "reader-b" in (raised.value.details() or "")
    # The forbidden call is refused before parsing: even bytes that are no protobuf get it.
    raw = grpc.secure_channel(
        mtls.address, dev_tls.client_tls("reader-b").credentials()
    ).unary_unary(f"/{SERVICE}/SignBatch")
    with pytest.raises(grpc.RpcError) as raised:
        raw(b"\xff\xff\xff", timeout=30)
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    health = health_pb2_grpc.HealthStub(tls_channel(mtls.address, dev_tls.client_tls("reader-b")))
    status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=30)
    assert status.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("client", [None, "foreign", "expired"])
def test_handshake_refuses_clients_without_a_valid_certificate(
    mtls: Appliance, dev_tls: DevTls, client: str | None
) -> None:
    signer = _signer(mtls, dev_tls, client)
    with pytest.raises(grpc.RpcError) as raised:
        signer.GetTrustList(pb.GetTrustListRequest(), timeout=10)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as plain:
        stub(mtls.address).GetTrustList(pb.GetTrustListRequest(), timeout=10)
    assert plain.value.code() is grpc.StatusCode.UNAVAILABLE


def test_quota_refusal_carries_retry_info(mtls: Appliance, dev_tls: DevTls) -> None:
    """issuer-a may send 100 items/s with a burst of 1000: a second full batch is refused before
    any HSM work, and the client is told when to retry."""
    signer = _signer(mtls, dev_tls, "issuer-a")
    full = _batch("q", vaccination_payloads(1000, seed=73))
    refusal = None
    for _ in range(3):
        try:
            signer.SignBatch(full, timeout=120)
        except grpc.RpcError as e:
            refusal = e
            break
    assert refusal is not None, "three full batches at once were all admitted"
    assert refusal.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(refusal)
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details)
    # the wait for the missing tokens at 100/s: above nothing, at most a whole burst's 10 s
    # (how much refilled while the earlier batches signed depends on the machine's load)
    delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    assert 0 < delay <= 10.0


def test_a_second_instance_on_the_same_port_is_refused(appliance: Appliance) -> None:
    port = appliance.address.rsplit(":", 1)[1]
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "signer.cli",
            "serve",
            "--config",
            str(appliance.config_path),
            "--port",
            port,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 2, second.stdout + second.stderr
    assert "in use" in second.stderr
    assert stub(appliance.address).GetTrustList(pb.GetTrustListRequest(), timeout=30).entries


def test_one_channel_reaches_every_worker(appliance: Appliance) -> None:
    """The normal gRPC client (one channel, one connection) uses every signing worker: the
    front splits each batch into chunks over the pool."""
    before = {pid: _cpu(pid) for pid in appliance.pids}
    signer = stub(appliance.address)
    request = _batch("w", vaccination_payloads(200, seed=74))
    for _ in range(15):
        response = signer.SignBatch(request, timeout=120)
        assert all(r.HasField("signed") for r in response.results)
    used = {pid: _cpu(pid) - before[pid] for pid in appliance.pids}
    assert len(used) == 2
    assert all(seconds > 0.05 for seconds in used.values()), used


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def test_sigterm_drains_a_live_stream_and_exits_0(tmp_path: Path) -> None:
    appliance, process = start_appliance(tmp_path, workers=1, key_algorithms=("ES256",))
    texts = [to_json(p) for p in vaccination_payloads(50, seed=75)]
    sent = threading.Event()

    def requests() -> Iterator[pb.SignBatchRequest]:
        for number in range(10_000):
            yield pb.SignBatchRequest(
                items=[pb.SignItem(id=f"{number}.{i}", payload_json=t) for i, t in enumerate(texts)]
            )
            if number == 3:
                sent.set()
            time.sleep(0.05)

    answered = 0
    outcome: list[grpc.RpcError] = []

    def consume() -> None:
        nonlocal answered
        try:
            for response in stub(appliance.address).SignStream(requests(), timeout=120):
                assert len(response.results) == len(texts)
                assert all(r.HasField("signed") for r in response.results)
                answered += 1
        except grpc.RpcError as e:
            outcome.append(e)

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        assert sent.wait(60)
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        reader.join(timeout=60)
    finally:
        if process.poll() is None:
            stop_appliance(process)
    assert outcome, "the stream did not end with a status"
    (error,) = outcome
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (error.details() or "")
    assert f"{answered} batch(es)" in (error.details() or "")
    assert answered >= 3
    log = (tmp_path / "serve.log").read_text()
    assert "restarting" not in log
