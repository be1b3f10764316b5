"""Overload (issue 9 §7): many clients flood a real appliance with big batches and short deadlines.

    python -m tests.overload --clients 64 --seconds 20 --batch 1000 --deadline 2

What it measures, while the flood runs and after it settles: the status of every call and how
fast it came (a RESOURCE_EXHAUSTED must come at once, not after queueing), the front's and the
workers' RSS sampled every 0.2 s, the ledger's records against the items of the batches answered
OK, and the signatures the workers made (``hcert_signatures_total``) against what was recorded
and what the front threw away for callers that had gone (``hcert_discarded_signatures_total``,
``hcert_chunks_dropped_total``). ``tests/integration/test_overload.py`` asserts on it;
``docs/performance.md`` holds the figures of a longer run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from tests.integration.helpers import scrape

#: Quotas wide enough that admitted work queues past the callers' deadlines: ~40 batches of
#: 1000 wait for 2 workers signing ~10–16 k items/s, so later ones see their deadline pass while
#: queued, and the rest of the flood is refused RESOURCE_EXHAUSTED (total_in_flight).
FLOOD_CONFIG = """
[quotas]
items_per_second = 10000000
burst = 10000000
max_in_flight_items = 40000
total_in_flight_items = 40000
"""

_MAX_MESSAGE = 64 << 20


@dataclass
class FloodReport:
    calls: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    ok_items: int = 0
    seconds: float = 0.0
    front_rss: list[int] = field(default_factory=list)
    workers_rss: list[int] = field(default_factory=list)
    records: int = 0
    signatures: float = 0.0
    discarded: float = 0.0
    chunks_dropped: float = 0.0
    refusal_buckets: dict[float, float] = field(default_factory=dict)  # le → count, server side

    def percentile(self, code: str, q: float) -> float:
        values = sorted(self.latencies.get(code, []))
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    def server_refusal_quantile(self, q: float) -> float:
        """The upper bound of the ``hcert_refusal_seconds`` bucket holding quantile ``q``."""
        total = self.refusal_buckets.get(float("inf"), 0.0)
        for bound in sorted(self.refusal_buckets):
            if self.refusal_buckets[bound] >= q * total:
                return bound
        return float("nan")

    def text(self) -> str:
        mib = 1 << 20
        lines = [f"{sum(self.calls.values())} calls in {self.seconds:.1f} s"]
        for code, count in self.calls.most_common():
            lines.append(
                f"  {code:20} {count:6}  latency p50 {self.percentile(code, 0.5) * 1000:7.1f} ms"
                f"  p99 {self.percentile(code, 0.99) * 1000:7.1f} ms"
                f"  max {max(self.latencies[code]) * 1000:7.1f} ms"
            )
        lines += [
            f"items answered OK {self.ok_items}; ledger records {self.records} "
            f"(excess {self.records - self.ok_items}); signatures made {self.signatures:.0f}; "
            f"discarded for callers gone {self.discarded:.0f}; chunks dropped unsent "
            f"{self.chunks_dropped:.0f}",
            f"front RSS first {self.front_rss[0] / mib:.1f}, max {max(self.front_rss) / mib:.1f}, "
            f"last {self.front_rss[-1] / mib:.1f} MiB; workers (sum) first "
            f"{self.workers_rss[0] / mib:.1f}, max {max(self.workers_rss) / mib:.1f}, last "
            f"{self.workers_rss[-1] / mib:.1f} MiB",
            f"server side, handler to RESOURCE_EXHAUSTED: p50 ≤ "
            f"{self.server_refusal_quantile(0.5) * 1000:g} ms, p99 ≤ "
            f"{self.server_refusal_quantile(0.99) * 1000:g} ms",
        ]
        return "\n".join(lines)


def _batches(batch: int, count: int) -> list[bytes]:
    """``count`` serialised batches of ``batch`` distinct realistic payloads each."""
    payloads = vaccination_payloads(batch * count, seed=int(time.time()))
    return [
        pb.SignBatchRequest(
            items=[
                pb.SignItem(id=str(i), payload_json=json.dumps(p, ensure_ascii=False))
                for i, p in enumerate(payloads[n * batch : (n + 1) * batch])
            ]
        ).SerializeToString()
        for n in range(count)
    ]


async def _flood(
    address: str, clients: int, seconds: float, deadline: float, batches: list[bytes]
) -> tuple[Counter[str], dict[str, list[float]], int]:
    calls: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {}
    ok_items = 0
    options = [
        ("grpc.max_send_message_length", _MAX_MESSAGE),
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ]
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(4)]
    stop = time.monotonic() + seconds

    async def client(index: int) -> None:
        nonlocal ok_items
        method = channels[index % len(channels)].unary_unary(
            "/hcert.signer.v1.Signer/SignBatch",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        n = index
        while time.monotonic() < stop:
            request = batches[n % len(batches)]
            n += 1
            started = time.monotonic()
            try:
                answer = await method(request, timeout=deadline)
                code = "OK"
                ok_items += len(pb.SignBatchResponse.FromString(answer).results)
            except grpc.aio.AioRpcError as e:
                code = e.code().name
            calls[code] += 1
            latencies.setdefault(code, []).append(time.monotonic() - started)
            if code == "RESOURCE_EXHAUSTED":
                await asyncio.sleep(0.01)  # a flood, but not a busy loop on the client's core

    await asyncio.gather(*(client(i) for i in range(clients)))
    for chan in channels:
        await chan.close()
    return calls, latencies, ok_items


def flood(
    address: str,
    metrics_port: int,
    front_pid: int,
    ledger: Path,
    *,
    clients: int = 64,
    seconds: float = 10.0,
    batch: int = 1000,
    deadline: float = 2.0,
) -> FloodReport:
    report = FloodReport()
    batches = _batches(batch, 8)
    before = scrape(metrics_port)
    records_before = _records(ledger)
    front = psutil.Process(front_pid)
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.is_set():
            try:
                workers = [c for c in front.children() if "signer.workers" in " ".join(c.cmdline())]
                report.front_rss.append(front.memory_info().rss)
                report.workers_rss.append(sum(w.memory_info().rss for w in workers))
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        report.calls, report.latencies, report.ok_items = asyncio.run(
            _flood(address, clients, seconds, deadline, batches)
        )
        report.seconds = time.monotonic() - started
        _settle(metrics_port)
    finally:
        sampling.set()
        sampler.join()
    after = scrape(metrics_port)

    def grown(name: str) -> float:
        return sum(v for (n, _), v in after.items() if n == name) - sum(
            v for (n, _), v in before.items() if n == name
        )

    report.records = _records(ledger) - records_before
    report.signatures = grown("hcert_signatures_total")
    report.discarded = grown("hcert_discarded_signatures_total")
    report.chunks_dropped = grown("hcert_chunks_dropped_total")
    report.refusal_buckets = {
        float(dict(labels)["le"]): value - before.get((name, labels), 0.0)
        for (name, labels), value in after.items()
        if name == "hcert_refusal_seconds_bucket"
    }
    return report


def _settle(metrics_port: int) -> None:
    """Until the signature count stops moving: chunks still at the workers have come back."""
    last = -1.0
    for _ in range(100):
        now = sum(v for (n, _), v in scrape(metrics_port).items() if n == "hcert_signatures_total")
        if now == last:
            return
        last = now
        time.sleep(0.5)


def _records(ledger: Path) -> int:
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM issuance").fetchone()
    return int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.overload", description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    from tests.conftest import start_appliance, stop_appliance, wait_serving

    directory = Path(tempfile.mkdtemp(prefix="hcert-overload-"))
    appliance, process = start_appliance(directory, FLOOD_CONFIG, workers=args.workers)
    try:
        wait_serving(appliance)
        report = flood(
            appliance.address, appliance.metrics_port, process.pid,
            directory / "dev" / "ledger.sqlite", clients=args.clients, seconds=args.seconds,
            batch=args.batch, deadline=args.deadline,
        )  # fmt: skip
    finally:
        stop_appliance(process)
        shutil.rmtree(directory, ignore_errors=True)
    print(" ".join(["python -m tests.overload", *sys.argv[1:]]))
    print(report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
