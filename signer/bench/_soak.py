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
import json
import multiprocessing
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from signer.api.v1 import signer_pb2 as pb
from signer.bench._load import build_requests
from signer.bench._soak_load import run_soak_load


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
