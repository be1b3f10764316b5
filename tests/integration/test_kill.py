"""Killed processes (issue 9 §6, §9): a signing worker under load, and the whole appliance.

§6: SIGKILL a worker while batches are in flight: the front keeps serving with the others, a
chunk of the dead worker is retried once on another worker or its batch answered UNAVAILABLE,
no response ever carries an item twice, the worker comes back with backoff, and deaths over and
over (all workers at once included) cost capacity, never the appliance.

§9: SIGKILL the front and its workers at once (their process group) during ``signer sign``.
After a restart on the same directory the appliance serves (the ledger matches the head the
token keeps: the token's head only moves at checkpoints of committed records, so a kill can leave
it behind the ledger, never ahead), ``signer audit verify`` passes, the dev token still holds
its key, and ``signer sign --resume`` answers every input line exactly once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance, wait_serving
from tests.independent import hc1_verifies
from tests.integration.helpers import (
    ROOT,
    alive,
    channel,
    ledger_records,
    read_jsonl,
    run_cli,
    sample,
    scrape,
    signer_cli,
    stub,
    to_json,
    wait_until,
    worker_pids,
)


@pytest.fixture(autouse=True)
def _softhsm() -> None:
    require_softhsm()


class _Load:
    """Client threads sending SignBatch back to back, each batch with ids of its own; every
    outcome is kept: (request ids, status code, response or None)."""

    def __init__(self, address: str, texts: list[str], lanes: int) -> None:
        self._address, self._texts = address, texts
        self._stop = threading.Event()
        self.outcomes: list[tuple[list[str], grpc.StatusCode, pb.SignBatchResponse | None]] = []
        self.details: Counter[str] = Counter()
        self._threads = [threading.Thread(target=self._lane, args=(n,)) for n in range(lanes)]

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def ok(self) -> int:
        return sum(1 for _, code, _ in self.outcomes if code is grpc.StatusCode.OK)

    def _lane(self, lane: int) -> None:
        signer = stub(self._address)
        number = 0
        while not self._stop.is_set():
            ids = [f"{lane}.{number}.{i}" for i in range(len(self._texts))]
            request = pb.SignBatchRequest(
                items=[
                    pb.SignItem(id=i, payload_json=t) for i, t in zip(ids, self._texts, strict=True)
                ]
            )
            try:
                response = signer.SignBatch(request, timeout=60)
                self.outcomes.append((ids, grpc.StatusCode.OK, response))
            except grpc.RpcError as e:
                self.outcomes.append((ids, e.code(), None))
                self.details[e.details() or ""] += 1
            number += 1


def _ready(appliance: Appliance, pid: int) -> bool | None:
    """The worker ``pid`` has logged in and read the keys (its own gauge says so)."""
    samples = scrape(appliance.metrics_port)
    return True if sample(samples, "hcert_worker_ready", pid=str(pid)) == 1 else None


def _next_worker(
    appliance: Appliance, front: int, index: int, not_these: set[int], timeout: float = 60
) -> int:
    """The pid of worker ``index`` once it is none of ``not_these`` and ready."""

    def found() -> int | None:
        pid = worker_pids(front).get(index)
        return pid if pid is not None and pid not in not_these and _ready(appliance, pid) else None

    return wait_until(found, timeout, f"worker {index} to be running and ready")


def test_workers_killed_under_load_cost_capacity_never_a_duplicate_or_the_appliance(
    tmp_path: Path,
) -> None:
    appliance, process = start_appliance(tmp_path, workers=3, key_algorithms=("ES256",))
    try:
        wait_serving(appliance)
        (dsc,) = appliance.dsc_by_kid().values()
        texts = [to_json(p) for p in vaccination_payloads(30, seed=96)]  # 10 items per chunk
        killed: list[int] = []
        with _Load(appliance.address, texts, lanes=3) as load:
            wait_until(lambda: True if load.ok() >= 5 else None, 60, "batches to sign")
            # Worker 2 dies again and again, each time soon after its successor is ready.
            for _ in range(4):
                victim = _next_worker(appliance, process.pid, 2, set(killed))
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
                signed_before = load.ok()
                wait_until(
                    lambda n=signed_before: True if load.ok() > n + 3 else None,  # type: ignore[misc]
                    60,
                    "the other workers to go on signing",
                )
            # Then every worker at once.
            everyone = {i: _next_worker(appliance, process.pid, i, set(killed)) for i in range(3)}
            for pid in everyone.values():
                os.kill(pid, signal.SIGKILL)
            killed += everyone.values()
            back = {i: _next_worker(appliance, process.pid, i, set(killed)) for i in range(3)}
            signed_before = load.ok()
            wait_until(lambda: True if load.ok() > signed_before + 3 else None, 60, "signing")
        assert process.poll() is None, "the front exited"
        assert set(worker_pids(process.pid).values()) == set(back.values())

        codes = Counter(code for _, code, _ in load.outcomes)
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
        assert all("worker" in d for d in load.details), load.details
        seen: set[str] = set()
        signed = 0
        for ids, _, response in load.outcomes:
            if response is None:
                continue
            # One result per item, in request order: none missing, none twice.
            assert [r.id for r in response.results] == ids
            assert all(r.HasField("signed") for r in response.results)
            hc1s = [r.signed.hc1 for r in response.results]
            assert seen.isdisjoint(hc1s) and len(set(hc1s)) == len(hc1s)
            seen.update(hc1s)
            signed += len(hc1s)
            for hc1 in (hc1s[0], hc1s[-1]):
                assert hc1_verifies(hc1, dsc)

        samples = scrape(appliance.metrics_port)
        assert sample(samples, "hcert_worker_lost_chunks_total", outcome="retried") >= 1
        assert sample(samples, "hcert_worker_restarts_total") >= len(killed)
        health = health_pb2_grpc.HealthStub(channel(appliance.address))
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=30).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stop_appliance(process)

    # Backoff: worker 2's restarts waited 0.5, 1, 2, 4, then 8 s (killed with the others).
    log = (tmp_path / "serve.log").read_text()
    delays = re.findall(r"worker 2 \(pid \d+\) exited with -9; restarting it in ([\d.]+) s", log)
    assert [float(d) for d in delays] == [0.5, 1.0, 2.0, 4.0, 8.0]
    # Every signature handed out has exactly one ledger record: a retried chunk's first
    # signatures never left the dead worker.
    assert ledger_records(tmp_path) == signed


CHECKPOINTS = "[ledger]\ncheckpoint_records = 300\ncheckpoint_seconds = 0.5\n"


def test_sigkill_of_the_whole_appliance_mid_run_corrupts_nothing_and_resume_completes(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "appliance"
    appliance, process = start_appliance(
        directory, CHECKPOINTS, workers=2, key_algorithms=("ES256",), own_session=True
    )
    # Long enough that the kill, at a fifth, lands mid-run on a fast machine (~8k certs/s).
    count, batch = 10_000, 100
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(to_json(p) + "\n" for p in vaccination_payloads(count, seed=97)))
    try:
        wait_serving(appliance)
        client = subprocess.Popen(
            [sys.executable, "-m", "signer.cli", "sign", str(source), "--server",
             appliance.address, "--out", str(out), "--batch", str(batch)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

        def written() -> bool | None:
            lines = out.read_bytes().count(b"\n") if out.exists() else 0
            assert lines < count, "the run ended before the kill"
            return True if lines >= count // 5 else None

        wait_until(written, 120, "a fifth of the file to be signed")
        workers = worker_pids(process.pid)
        os.killpg(process.pid, signal.SIGKILL)  # the front and its workers, all at once
        process.wait(timeout=30)
        _, stderr = client.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert client.returncode == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr  # one line, no traceback
    wait_until(
        lambda: True if not any(alive(p) for p in workers.values()) else None, 30, "workers gone"
    )
    before = read_jsonl(out)
    assert 0 < len(before) < count

    again, process = start_appliance(
        directory, CHECKPOINTS, workers=2, key_algorithms=("ES256",), own_session=True
    )
    try:
        wait_serving(again, timeout=60)  # the ledger's head matched the token's: it signs
        verified = signer_cli("audit", "verify", "--config", str(again.config_path))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # The token's head (and every checkpoint) covers committed records only: at or
        # behind the chain's end, never ahead of it.
        anchored = re.findall(
            r"(\d+) record\(s\), intact; .* the last at record (\d+)", verified.stdout
        )
        assert anchored, verified.stdout
        assert all(int(last) <= int(records) for records, last in anchored), verified.stdout
        listed = signer_cli("keys", "list", "--config", str(again.config_path), "--json")
        assert listed.returncode == 0, listed.stderr
        keys = json.loads(listed.stdout)
        assert [(k["alg"], k["state"]) for k in keys] == [("ES256", "active")]
        resumed = run_cli(
            "sign", str(source), "--server", again.address, "--out", str(out),
            "--batch", str(batch), "--resume",
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        (dsc,) = again.dsc_by_kid().values()  # the key listed above, in the trust list
    finally:
        stop_appliance(process)

    results = read_jsonl(out)
    assert sorted(r["line"] for r in results) == list(range(1, count + 1))  # each line once
    assert results[: len(before)] == before  # what the killed run wrote is kept as it was
    for result in results:
        assert hc1_verifies(result["hc1"], dsc)
    # Signed but never written by the killed run: at most the client's window of batches,
    # signed again on resume (README: --resume).
    records = ledger_records(directory)
    assert count <= records <= count + 2 * batch
    final = signer_cli("audit", "verify", "--config", str(again.config_path))
    assert final.returncode == 0, final.stdout + final.stderr
    log = (directory / "serve.log").read_text()
    assert "Traceback" not in log
