"""Orchestration of ``signer bench`` and its report."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil

from signer.api.v1 import signer_pb2 as pb
from signer.bench._load import build_requests, run_load, run_stream
from signer.bench._raw import raw_sign_rate
from signer.config import load_config
from signer.devsetup import prepare_dev_environment
from signer.domain import Alg
from signer.errors import BackendError
from signer.progress import Progress

_ALG_PB = {Alg.ES256: pb.ALGORITHM_ES256, Alg.PS256: pb.ALGORITHM_PS256}


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    softhsm = ""
    util = shutil.which("softhsm2-util")
    if util:
        softhsm = subprocess.run(
            [util, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "softhsm": softhsm,
        "python-pkcs11": version("python-pkcs11"),
        "grpcio": version("grpcio"),
        "cbor2": version("cbor2"),
    }


def _start_server(
    args: argparse.Namespace, workers: int, directory: Path
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ready = directory / "ready.json"
    command = [sys.executable, "-m", "signer.cli", "serve", "--port", "0", "--metrics-port", "0"]
    command += ["--sessions", str(workers), "--ready-file", str(ready)]
    # the bench's own ledger: a fresh SQLite file, or the database it was given
    command += ["--ledger", args.ledger or str(directory / "ledger.sqlite")]
    # a chain of its own: the token keeps every chain's head, and each run starts a new chain
    command += ["--ledger-chain", f"bench-{os.getpid()}-{time.time_ns()}"]
    if args.config is not None:
        command += ["--config", str(args.config)]
    log = (directory / "serve.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise BackendError(
                "bench server did not start:\n" + (directory / "serve.log").read_text()
            )
        time.sleep(0.1)
    return process, json.loads(ready.read_text())


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _rss_mib(pids: list[int]) -> list[float]:
    return [round(psutil.Process(pid).memory_info().rss / 2**20, 1) for pid in pids]


def run_bench(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    prepare_dev_environment(config)
    workers = args.sessions or config.hsm.session_count()
    alg = Alg(args.alg)
    figures: dict[str, Any] = {"machine": machine(), "alg": alg.value, "sessions": workers}

    _say(
        f"(a) raw python-pkcs11 {alg.value} signing, {workers} process(es), {args.seconds:.0f} s …"
    )
    raw = raw_sign_rate(config, alg, workers, args.seconds)
    figures["raw_sig_per_s"] = round(raw)
    _say(f"    {raw:,.0f} signatures/s")

    requests = max(1, args.items // args.batch)
    _say(
        f"(b) end to end: {requests} × {args.batch} items through gRPC, "
        f"{args.concurrency} in flight …"
    )
    blobs = build_requests(args.batch, _ALG_PB[alg])
    with tempfile.TemporaryDirectory(prefix="hcert-bench-") as tmp:
        server, info = _start_server(args, workers, Path(tmp))
        info["pids"] = [server.pid, *info["pids"]]  # the front counts too
        try:
            address = f"127.0.0.1:{info['port']}"
            ctx = multiprocessing.get_context("spawn")
            out = ctx.Queue()
            warm = ctx.Process(
                target=run_load, args=(address, blobs, args.concurrency * 2, args.concurrency, out)
            )
            warm.start()
            out.get(timeout=300)
            warm.join()
            rss_before = _rss_mib(info["pids"])
            cpu_before = _cpu_seconds(info["pids"])
            front_before = _cpu_seconds(info["pids"][:1])
            result = _measured_load(ctx, address, blobs, requests, args, out)
            rss_after = _rss_mib(info["pids"])
            server_cpu = _cpu_seconds(info["pids"]) - cpu_before
            front_cpu = _cpu_seconds(info["pids"][:1]) - front_before
            stream = _long_stream(ctx, address, blobs, args, info["pids"])
            unary = _one_item_calls(ctx, address, info["pids"], alg, args.unary_calls)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    certs = result["signed"] / result["seconds"]
    figures.update(
        {
            "e2e_certs_per_s": round(certs),
            "e2e_items": result["signed"] + result["rejected"],
            "e2e_rejected": result["rejected"],
            "batch": args.batch,
            "concurrency": args.concurrency,
            "p50_batch_ms": round(result["p50"] * 1000, 1),
            "p99_batch_ms": round(result["p99"] * 1000, 1),
            "server_rss_mib_before": rss_before,
            "server_rss_mib_after": rss_after,
            "ratio": round(certs / raw, 3),
            "server_cpu_us_per_item": round(server_cpu / max(1, result["signed"]) * 1e6, 1),
            "front_cpu_us_per_item": round(front_cpu / max(1, result["signed"]) * 1e6, 1),
            "client_cpu_us_per_item": round(
                result["client_cpu_seconds"] / max(1, result["signed"]) * 1e6, 1
            ),
        }
    )
    if stream is not None:
        figures["stream"] = stream
    if unary is not None:
        figures["one_item"] = unary
    print(_report(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if result["rejected"]:
        _say(f"warning: {result['rejected']} items were rejected during the run")
        return 1
    return 0


def _outcome(result: dict[str, Any]) -> str:
    return f"{result['signed']:,} signed, {result['rejected']:,} rejected"


def _measured_load(
    ctx: Any, address: str, blobs: list[bytes], requests: int, args: argparse.Namespace, out: Any
) -> dict[str, Any]:
    """Phase (b): ``requests`` batches from a load process, with progress on stderr."""
    done = ctx.Value("q", 0, lock=False)  # one writer: the load process
    load = ctx.Process(
        target=run_load, args=(address, blobs, requests, args.concurrency, out, done)
    )
    load.start()
    progress = Progress(sys.stderr, total=requests * args.batch)
    result = _wait_with_progress(out, load, done, progress, 3600)
    load.join()
    return result


def _wait_with_progress(
    out: Any, process: Any, done: Any, progress: Progress, timeout: float
) -> dict[str, Any]:
    """The load process's figures from ``out``, showing its progress meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result: dict[str, Any] = out.get(timeout=0.5)
        except queue.Empty:
            if process.is_alive() and time.monotonic() < deadline:
                progress.update(done.value)
                continue
            try:  # it may have put its figures just before it ended
                result = out.get(timeout=5)
            except queue.Empty:
                raise BackendError(
                    "the bench's load generator gave no figures (it ended, or ran past the timeout)"
                ) from None
        progress.finish(result["signed"] + result["rejected"], _outcome(result))
        return result


def _long_stream(
    ctx: Any, address: str, blobs: list[bytes], args: argparse.Namespace, pids: list[int]
) -> dict[str, Any] | None:
    """Phase (c), optional: one SignStream of --stream-items items; worker RSS sampled each
    second (it must stay flat: the server holds at most ``stream_window`` batches)."""
    requests = args.stream_items // args.batch
    if requests <= 0:
        return None
    _say(f"(c) one SignStream of {requests * args.batch:,} items, sampling server RSS …")
    out = ctx.Queue()
    done = ctx.Value("q", 0, lock=False)
    process = ctx.Process(target=run_stream, args=(address, blobs, requests, out, done))
    process.start()
    progress = Progress(sys.stderr, total=requests * args.batch)
    samples: list[float] = []
    while process.is_alive():
        samples.append(round(sum(_rss_mib(pids)), 1))
        progress.update(done.value)
        process.join(timeout=1.0)  # a sample a second; returns at once when the stream ends
    result = out.get(timeout=60)
    process.join()
    progress.finish(result["signed"] + result["rejected"], _outcome(result))
    return {
        "items": result["signed"] + result["rejected"],
        "rejected": result["rejected"],
        "certs_per_s": round(result["signed"] / result["seconds"]),
        "rss_mib_first": samples[0] if samples else None,
        "rss_mib_max": max(samples) if samples else None,
        "rss_mib_last": samples[-1] if samples else None,
        "rss_samples": len(samples),
    }


def _one_item_calls(
    ctx: Any, address: str, pids: list[int], alg: Alg, calls: int
) -> dict[str, Any] | None:
    """Phase (d), optional: server CPU per one-item SignBatch against a bare grpc.aio call with
    one executor hop (a separate server process on this machine), 8 calls in flight each."""
    if calls <= 0:
        return None
    from signer.bench._unary import _BARE_METHOD, run_bare_server, run_unary_load

    _say(f"(d) {calls:,} one-item SignBatch calls, then as many bare grpc.aio calls …")
    blob = build_requests(1, _ALG_PB[alg])[0]
    out = ctx.Queue()
    before = _cpu_seconds(pids)
    load = ctx.Process(
        target=run_unary_load, args=(address, "/hcert.signer.v1.Signer/SignBatch", blob, calls, out)
    )
    load.start()
    out.get(timeout=600)
    load.join()
    appliance = (_cpu_seconds(pids) - before) / calls * 1e6
    bare = ctx.Process(target=run_bare_server, args=(out,), daemon=True)
    bare.start()
    port = out.get(timeout=60)
    before = _cpu_seconds([bare.pid])
    load = ctx.Process(
        target=run_unary_load, args=(f"127.0.0.1:{port}", _BARE_METHOD, blob, calls, out)
    )
    load.start()
    out.get(timeout=600)
    load.join()
    baseline = (_cpu_seconds([bare.pid]) - before) / calls * 1e6
    bare.kill()
    return {
        "calls": calls,
        "appliance_us_per_call": round(appliance, 1),
        "bare_us_per_call": round(baseline, 1),
        "ratio": round(appliance / baseline, 2),
    }


def _report(f: dict[str, Any]) -> str:
    m = f["machine"]
    stream = f.get("stream")
    one = f.get("one_item")
    one_lines = (
        [
            f"(d) one-item SignBatch: {one['appliance_us_per_call']} µs server CPU per call "
            f"(front + workers) against {one['bare_us_per_call']} µs for a bare grpc.aio call "
            f"with one executor hop: {one['ratio']:.2f}×",
        ]
        if one
        else []
    )
    stream_lines = (
        [
            f"(c) one SignStream of {stream['items']:,} items: {stream['certs_per_s']:,} certs/s, "
            f"server RSS (front + workers) first {stream['rss_mib_first']} MiB, "
            f"max {stream['rss_mib_max']} MiB, last {stream['rss_mib_last']} MiB",
        ]
        if stream
        else []
    )
    return "\n".join(
        [
            f"machine: {m['cpus']} CPU ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}",
            f"         Python {m['python']}, {m['softhsm'] and 'SoftHSM ' + m['softhsm']}, "
            f"python-pkcs11 {m['python-pkcs11']}, grpcio {m['grpcio']}, cbor2 {m['cbor2']}",
            f"alg {f['alg']}, {f['sessions']} HSM session(s) + the front, batch {f['batch']}, "
            f"{f['concurrency']} requests in flight",
            f"(a) raw HSM signing:      {f['raw_sig_per_s']:>9,} sig/s",
            f"(b) end-to-end HC1 (gRPC): {f['e2e_certs_per_s']:>8,} certs/s "
            f"({f['e2e_items']:,} items, {f['e2e_rejected']} rejected)",
            f"    batch latency p50 {f['p50_batch_ms']} ms, p99 {f['p99_batch_ms']} ms",
            f"    server RSS per process (MiB, front first): before {f['server_rss_mib_before']}, "
            f"after {f['server_rss_mib_after']}",
            f"    CPU per item: server {f['server_cpu_us_per_item']} µs (front + workers; front "
            f"{f['front_cpu_us_per_item']} µs), "
            f"load generator {f['client_cpu_us_per_item']} µs",
            f"ratio (b)/(a): {f['ratio']:.2f}",
            *stream_lines,
            *one_lines,
        ]
    )
