"""``signer bench --soak-minutes N``: a long run at a steady fraction of measured capacity.

Issue 9 §11. Against a real ``signer serve`` the bench starts (as phase (b) does), a load
generator process first measures capacity with closed-loop batches for ``--capacity-seconds``,
then sends batches open-loop at ``--load`` × that rate for N minutes: each batch has its send
time fixed in advance, and its latency runs from that time, so a server that falls behind shows
it in the percentiles instead of slowing the generator down (no coordinated omission). At most
``--max-in-flight`` batches are outstanding. Every ``--window`` seconds the generator reports
its window and the bench samples the RSS of every server process (the front and each worker).

An error is a call that did not end OK, an item that was not signed, a response whose ids do
not match the request, or a sampled HC1 (one per window) that does not verify against the
appliance's trust list. Exit status 0 only with no error, no server process gone or restarted,
and no process whose RSS grew more than ``--max-rss-growth-mib`` from the end of the first
window to the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from signer.api.v1 import signer_pb2 as pb
from signer.bench._load import build_requests

_METHOD = "/hcert.signer.v1.Signer/SignBatch"
_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.use_local_subchannel_pool", 1),  # one connection per channel
]


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9 and max, in milliseconds (empty input: all 0)."""
    if not latencies:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0}
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)}


class _Tally:
    """What the generator saw in one window (and in the whole run)."""

    def __init__(self) -> None:
        self.calls = 0
        self.signed = 0
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []

    def add(self, other: _Tally) -> None:
        self.calls += other.calls
        self.signed += other.signed
        self.errors.update(other.errors)
        self.latencies += other.latencies

    def report(self, seconds: float) -> dict[str, Any]:
        return {
            "seconds": round(seconds, 1),
            "calls": self.calls,
            "signed": self.signed,
            "certs_per_s": round(self.signed / seconds) if seconds > 0 else 0,
            "errors": dict(self.errors),
            "latency_ms": percentiles(self.latencies),
        }


async def _capacity(calls: list[Any], blobs: list[bytes], seconds: float) -> float:
    """Certificates per second with every lane sending its next batch as soon as one returns."""
    signed = 0
    end = time.perf_counter() + seconds

    async def lane(call: Any, offset: int) -> None:
        nonlocal signed
        n = offset
        while time.perf_counter() < end:
            response = pb.SignBatchResponse.FromString(await call(blobs[n % len(blobs)]))
            signed += sum(1 for r in response.results if r.HasField("signed"))
            n += len(calls)

    started = time.perf_counter()
    await asyncio.gather(*(lane(call, i) for i, call in enumerate(calls)))
    return signed / (time.perf_counter() - started)


class _Paced:
    """Open-loop batches at ``rate`` per second for the soak's minutes, reported per window."""

    def __init__(
        self, calls: list[Any], blobs: list[bytes], trust: Any, settings: dict[str, Any], out: Any
    ) -> None:
        self._calls, self._blobs, self._trust = calls, blobs, trust
        self._ids = [[item.id for item in pb.SignBatchRequest.FromString(b).items] for b in blobs]
        self._settings, self._out = settings, out
        self._window, self._total = _Tally(), _Tally()
        self._sample_due = True
        self._limit = asyncio.Semaphore(settings["max_in_flight"])

    async def _one(self, number: int, scheduled: float) -> None:
        import grpc

        from signer.hcert.verify import verify_hc1

        blob = number % len(self._blobs)
        try:
            raw = await self._calls[number % len(self._calls)](self._blobs[blob], timeout=60)
        except grpc.aio.AioRpcError as e:
            self._window.errors[e.code().name] += 1
            return
        finally:
            self._limit.release()
            self._window.calls += 1
        window = self._window
        window.latencies.append(time.perf_counter() - scheduled)
        response = pb.SignBatchResponse.FromString(raw)
        if [r.id for r in response.results] != self._ids[blob]:
            window.errors["ids"] += 1
        ok = [r for r in response.results if r.HasField("signed")]
        window.signed += len(ok)
        if len(ok) != len(response.results):
            window.errors["rejected"] += len(response.results) - len(ok)
        if self._sample_due and ok:
            self._sample_due = False
            if not verify_hc1(ok[0].signed.hc1, self._trust).ok:
                window.errors["verify"] += 1

    def _close_window(self, started: float, window_started: float) -> None:
        now = time.perf_counter()
        self._out.put(
            ("window", round(now - started, 1), self._window.report(now - window_started))
        )
        self._total.add(self._window)
        self._window, self._sample_due = _Tally(), True

    async def run(self, rate: float) -> tuple[_Tally, float]:
        """Send until the minutes are over, then wait for the calls in flight; the total and
        the seconds it took."""
        tasks: set[asyncio.Task[None]] = set()
        started = window_started = time.perf_counter()
        step = self._settings["window"]
        end, next_report = started + self._settings["minutes"] * 60, started + step
        number = 0
        while True:
            scheduled = started + number / rate
            now = time.perf_counter()
            if now >= next_report or scheduled >= end:
                self._close_window(started, window_started)
                window_started, next_report = now, next_report + step
                if scheduled >= end:
                    break
            if scheduled > now:
                await asyncio.sleep(min(scheduled, next_report) - now)
                continue
            await self._limit.acquire()  # bounded: falling behind shows in the latencies
            task = asyncio.ensure_future(self._one(number, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            number += 1
        if tasks:
            await asyncio.gather(*tasks)
        self._total.add(self._window)  # calls that ended after the last window
        return self._total, time.perf_counter() - started


async def _trust(channel: Any) -> Any:
    """The appliance's DSCs as a trust store, for the sampled verifications."""
    from cryptography import x509

    from signer.hcert.verify import TrustedDsc, TrustStore

    call = channel.unary_unary("/hcert.signer.v1.Signer/GetTrustList")
    raw = await call(pb.GetTrustListRequest().SerializeToString())
    return TrustStore(
        TrustedDsc.from_certificate(x509.load_der_x509_certificate(e.certificate_der))
        for e in pb.GetTrustListResponse.FromString(raw).entries
    )


async def _soak(
    address: str, blobs: list[bytes], settings: dict[str, Any], out: Any
) -> dict[str, Any]:
    import grpc

    channels = [
        grpc.aio.insecure_channel(address, options=_OPTIONS) for _ in range(settings["concurrency"])
    ]
    calls = [ch.unary_unary(_METHOD) for ch in channels]
    for ch in channels:
        await ch.channel_ready()
    trust = await _trust(channels[0])
    capacity = await _capacity(calls, blobs, settings["capacity_seconds"])
    rate = settings["load"] * capacity / settings["batch"]  # batches per second
    out.put(("capacity", round(capacity), round(rate, 2)))
    total, seconds = await _Paced(calls, blobs, trust, settings, out).run(rate)
    for ch in channels:
        await ch.close()
    return {
        "capacity_certs_per_s": round(capacity),
        "target_batches_per_s": round(rate, 2),
        **total.report(seconds),
    }


def run_soak_load(address: str, blobs: list[bytes], settings: dict[str, Any], out: Any) -> None:
    """Process entry point of the generator; puts ``capacity``, ``window`` and ``done``."""
    out.put(("done", asyncio.run(_soak(address, blobs, settings, out))))


def _rss_mib(pid: int) -> float | None:
    try:
        rss: int = psutil.Process(pid).memory_info().rss
    except psutil.NoSuchProcess:
        return None
    return round(rss / 2**20, 1)


def _restarts(metrics_port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "hcert_worker_restarts_total"
    )


def run_soak(args: argparse.Namespace) -> int:
    from signer.bench._run import _start_server, machine
    from signer.config import load_config
    from signer.devsetup import prepare_dev_environment

    config = load_config(args.config)
    prepare_dev_environment(config)
    workers = args.sessions or config.hsm.session_count()
    batch = args.batch or 100
    settings = {
        "minutes": args.soak_minutes,
        "load": args.load,
        "batch": batch,
        "concurrency": args.concurrency,
        "capacity_seconds": args.capacity_seconds,
        "window": args.window,
        "max_in_flight": args.max_in_flight,
    }
    alg = pb.ALGORITHM_ES256 if args.alg == "ES256" else pb.ALGORITHM_PS256
    blobs = build_requests(batch, alg)
    figures: dict[str, Any] = {"machine": machine(), "alg": args.alg, "sessions": workers}
    figures["settings"] = settings
    _say(
        f"soak: {workers} worker(s), batches of {batch}; capacity over "
        f"{args.capacity_seconds:g} s, then {args.load:.0%} of it for {args.soak_minutes:g} min"
    )
    with tempfile.TemporaryDirectory(prefix="hcert-soak-") as tmp:
        server, info = _start_server(args, workers, Path(tmp))
        pids = {"front": server.pid, **{f"worker-{i}": p for i, p in enumerate(info["pids"])}}
        try:
            _wait_serving(f"127.0.0.1:{info['port']}")
            ctx = multiprocessing.get_context("spawn")
            out = ctx.Queue()
            load = ctx.Process(
                target=run_soak_load, args=(f"127.0.0.1:{info['port']}", blobs, settings, out)
            )
            load.start()
            windows, rss = _follow(out, pids, load, settings)
            result = windows.pop()  # the "done" message
            load.join(timeout=60)
            restarts = _restarts(info["metrics_port"])
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    figures.update(result)
    figures["windows"] = windows
    figures["rss_mib"] = rss
    figures["worker_restarts"] = restarts
    growth = {name: _growth(samples) for name, samples in rss.items()}
    figures["rss_growth_mib"] = growth
    gone = [name for name, g in growth.items() if g is None]
    grew = [n for n, g in growth.items() if g is not None and g > args.max_rss_growth_mib]
    errors = sum(result["errors"].values())
    figures["verdict"] = {"errors": errors, "gone": gone, "grew": grew}
    print(_report(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if errors == 0 and not gone and not grew and restarts == 0 else 1


def _growth(samples: list[float | None]) -> float | None:
    """Last sample minus the first; None when the process was gone at some sample."""
    present = [s for s in samples if s is not None]
    if not present or len(present) != len(samples):
        return None
    return round(float(present[-1] - present[0]), 1)


def _follow(
    out: Any, pids: dict[str, int], load: Any, settings: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, list[float | None]]]:
    """Print each window as it comes, with the RSS of every server process sampled then; the
    windows (the last entry is the generator's total) and the RSS series."""
    windows: list[dict[str, Any]] = []
    rss: dict[str, list[float | None]] = {name: [] for name in pids}
    timeout = settings["capacity_seconds"] + settings["minutes"] * 60 + 600
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = out.get(timeout=5)
        except Exception:  # queue.Empty; the generator may have died
            if not load.is_alive():
                raise RuntimeError("the load generator exited without a result") from None
            continue
        if message[0] == "capacity":
            _say(f"capacity {message[1]:,} certs/s; sending {message[2]} batches/s")
        elif message[0] == "window":
            at, window = message[1], message[2]
            sizes = {name: _rss_mib(pid) for name, pid in pids.items()}
            for name, size in sizes.items():
                rss[name].append(size)
            window["at_s"], window["rss_mib"] = at, sizes
            windows.append(window)
            lat = window["latency_ms"]
            _say(
                f"{at:7.0f} s  {window['certs_per_s']:>6,} certs/s  errors "
                f"{sum(window['errors'].values())}  p50 {lat['p50']} p99 {lat['p99']} "
                f"max {lat['max']} ms  RSS MiB " + " ".join(f"{n}={s}" for n, s in sizes.items())
            )
        elif message[0] == "done":
            windows.append(message[1])
            return windows, rss
    raise RuntimeError(f"the soak did not end within {timeout:.0f} s")


def _wait_serving(address: str, timeout: float = 120.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the appliance did not turn SERVING within {timeout:.0f} s")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _report(f: dict[str, Any]) -> str:
    m, lat = f["machine"], f["latency_ms"]
    rss_lines = [
        f"    {name:9} first {samples[0]} MiB, max {max(s or 0 for s in samples)} MiB, "
        f"last {samples[-1]} MiB (growth {f['rss_growth_mib'][name]} MiB)"
        for name, samples in f["rss_mib"].items()
        if samples
    ]
    verdict = f["verdict"]
    return "\n".join(
        [
            f"machine: {m['cpus']} CPU ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}",
            f"         Python {m['python']}, SoftHSM {m['softhsm']}, grpcio {m['grpcio']}",
            f"soak: alg {f['alg']}, {f['sessions']} worker(s), batch {f['settings']['batch']}, "
            f"capacity {f['capacity_certs_per_s']:,} certs/s, load "
            f"{f['settings']['load']:.0%} = {f['target_batches_per_s']} batches/s",
            f"{f['seconds']:.0f} s: {f['calls']:,} calls, {f['signed']:,} certificates signed "
            f"({f['certs_per_s']:,}/s), errors {f['errors'] or 0}, worker restarts "
            f"{f['worker_restarts']:g}",
            f"batch latency from its scheduled send: p50 {lat['p50']} ms, p90 {lat['p90']} ms, "
            f"p99 {lat['p99']} ms, p99.9 {lat['p999']} ms, max {lat['max']} ms",
            f"server RSS, {len(f['windows'])} samples every {f['settings']['window']:g} s:",
            *rss_lines,
            "verdict: "
            + (
                "PASS"
                if not verdict["errors"] and not verdict["gone"] and not verdict["grew"]
                else f"FAIL {verdict}"
            ),
        ]
    )
