"""Servers of their own: long streams, no keys, killed workers, DSCs too short-lived.

Each test starts a real ``signer serve`` in its tmp dir and stops it in ``finally``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.hcert.verify import verify_hc1
from tests.conftest import require_softhsm, start_appliance, stop_appliance
from tests.integration.helpers import (
    TEST_PAYLOAD,
    alive,
    channel,
    rss,
    sample,
    scrape,
    sign_one,
    stub,
    to_json,
    trust_store,
    wait_until,
    worker_pids,
)

MIB = 1 << 20
SERVICE = "hcert.signer.v1.Signer"


@pytest.fixture(autouse=True)
def _softhsm() -> None:
    require_softhsm()


def test_memory_stays_bounded_over_a_long_stream(tmp_path: Path) -> None:
    """200,000 items in one SignStream; RSS after batch 40 vs at the end, for every worker.

    30 MiB over 160,000 items is ~200 bytes per item: a server that kept every result (~600
    bytes each) or every request would break it.
    """
    batches, size, early_at = 400, 500, 40
    texts = [to_json(p) for p in vaccination_payloads(size, seed=400)]
    appliance, process = start_appliance(tmp_path)
    try:
        pids = appliance.pids

        def requests() -> Iterator[pb.SignBatchRequest]:
            for b in range(batches):
                yield pb.SignBatchRequest(
                    items=[pb.SignItem(id=f"{b}.{i}", payload_json=t) for i, t in enumerate(texts)]
                )

        received = signed = 0
        early: dict[int, int] = {}
        for number, response in enumerate(
            stub(appliance.address).SignStream(requests(), timeout=600), start=1
        ):
            assert response.results[0].id == f"{number - 1}.0"
            received += len(response.results)
            signed += sum(1 for r in response.results if r.HasField("signed"))
            if number == early_at:
                early = {pid: rss(pid) for pid in pids}
        final = {pid: rss(pid) for pid in pids}

        assert received == signed == batches * size
        assert all(alive(pid) for pid in pids)
        grown = {pid: (final[pid] - early[pid]) / MIB for pid in pids}
        for pid in pids:
            assert final[pid] <= early[pid] + 30 * MIB, f"worker RSS grew (MiB): {grown}"
    finally:
        stop_appliance(process)


def test_no_active_key_means_not_serving_and_no_key_rejections(tmp_path: Path) -> None:
    appliance, process = start_appliance(tmp_path, key_algorithms=())
    try:
        health = health_pb2_grpc.HealthStub(channel(appliance.address))
        for service in ("", SERVICE):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING, service
        assert appliance.trust_list() == []

        payloads = vaccination_payloads(3, seed=1)
        for alg in (pb.ALGORITHM_UNSPECIFIED, pb.ALGORITHM_ES256, pb.ALGORITHM_PS256):
            response = stub(appliance.address).SignBatch(
                pb.SignBatchRequest(
                    items=[
                        pb.SignItem(id=str(i), payload_json=to_json(p))
                        for i, p in enumerate(payloads)
                    ]
                    + [pb.SignItem(id="test", payload_json=to_json(TEST_PAYLOAD))],
                    alg=alg,
                ),
                timeout=60,
            )
            assert [r.id for r in response.results] == ["0", "1", "2", "test"]
            for result in response.results:
                assert result.HasField("rejected"), result.id
                assert [e.code for e in result.rejected.errors] == ["no_key"]
                assert result.rejected.errors[0].message

        assert process.poll() is None, "the front exited"
        assert all(alive(pid) for pid in appliance.pids)
        samples = scrape(appliance.metrics_port)
        assert sample(samples, "hcert_item_errors_total", code="no_key") >= 12
        # every certificate type reported as unsignable (the HcertSignerTypeWithoutKey alert)
        for cert_type in ("vaccination", "test", "recovery"):
            assert ("hcert_active_keys", frozenset({("type", cert_type)})) in samples
            assert sample(samples, "hcert_active_keys", type=cert_type) == 0
    finally:
        stop_appliance(process)


def test_killed_worker_is_replaced_and_signing_goes_on(tmp_path: Path) -> None:
    appliance, process = start_appliance(tmp_path)
    try:
        payload = to_json(vaccination_payloads(1, seed=2)[0])
        assert set(worker_pids(process.pid).values()) == set(appliance.pids)
        victim, survivor = appliance.pids

        os.kill(victim, signal.SIGKILL)

        def replacement() -> int | None:
            workers = set(worker_pids(process.pid).values())
            new = workers - set(appliance.pids)
            return new.pop() if len(workers) == 2 and victim not in workers and new else None

        new_pid = wait_until(replacement, 60, "the front to start a new worker")
        assert alive(survivor)

        def ready() -> bool | None:
            samples = scrape(appliance.metrics_port)
            return True if sample(samples, "hcert_worker_ready", pid=str(new_pid)) == 1 else None

        wait_until(ready, 60, f"worker {new_pid} to report ready")

        # Every call is spread over both workers by the front; every one must sign.
        trust = trust_store(appliance.dsc_by_kid().values())
        for _ in range(8):
            result = sign_one(appliance.address, payload)
            assert result.HasField("signed"), result.rejected
            assert verify_hc1(result.signed.hc1, trust).ok
        assert process.poll() is None
        assert set(worker_pids(process.pid).values()) == {survivor, new_pid}
        log = (tmp_path / "serve.log").read_text()
        assert f"pid {victim}" in log and "restarting it" in log
        assert sample(scrape(appliance.metrics_port), "hcert_worker_restarts_total") >= 1
    finally:
        stop_appliance(process)


def test_certificate_outliving_its_dsc_is_refused(tmp_path: Path) -> None:
    appliance, process = start_appliance(
        tmp_path, extra_config="[issuer.validity_days]\nvaccination = 1000\n"
    )
    try:
        payload = to_json(vaccination_payloads(1, seed=3)[0])
        kids = {e.alg: e.kid for e in appliance.trust_list()}
        for alg in (pb.ALGORITHM_UNSPECIFIED, pb.ALGORITHM_ES256, pb.ALGORITHM_PS256):
            result = sign_one(appliance.address, payload, alg)
            assert result.HasField("rejected"), alg
            (error,) = result.rejected.errors
            assert error.code == "dsc_validity"
            assert error.path == ""
            assert "DSC" in error.message
            wanted = pb.ALGORITHM_ES256 if alg == pb.ALGORITHM_UNSPECIFIED else alg
            assert kids[wanted].hex() in error.message

        # Test certificates keep the default 365 days, which the DSCs cover.
        test = sign_one(appliance.address, to_json(TEST_PAYLOAD))
        assert test.HasField("signed"), test.rejected
        assert test.signed.exp - test.signed.iat == 365 * 86400
        assert process.poll() is None
    finally:
        stop_appliance(process)
