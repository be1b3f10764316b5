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
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from signer.api.v1 import signer_pb2 as pb
from signer.bench._fairness import B_BATCHES, measure_fairness
from signer.bench._load import ClientPems, build_requests, run_load, run_stream
from signer.bench._raw import raw_sign_rate
from signer.config import load_config
from signer.devsetup import prepare_dev_environment
from signer.devtls import DevTls, write_dev_tls
from signer.domain import Alg
from signer.errors import BackendError
from signer.progress import Progress

_ALG_PB = {Alg.ES256: pb.ALGORITHM_ES256, Alg.PS256: pb.ALGORITHM_PS256}
#: The client name of the bench's load generator in its mutual-TLS runs (``--tls``).
BENCH_CLIENT = "bench"
#: The flooding client of the fairness phase (``--fairness``): a second identity.
FLOOD_CLIENT = "bench-flood"


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
    clients = [BENCH_CLIENT, FLOOD_CLIENT] if args.fairness else [BENCH_CLIENT]
    tls = write_dev_tls(directory / "tls", clients) if args.tls else None
    if tls is not None:
        command += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
        command += ["--client-ca", str(tls.ca)]
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
    info = json.loads(ready.read_text())
    info["client_tls"] = _client_pems(tls, BENCH_CLIENT) if tls is not None else None
    info["flood_tls"] = _client_pems(tls, FLOOD_CLIENT) if args.fairness and tls else None
    return process, info


def _client_pems(tls: DevTls, client: str) -> ClientPems:
    """What a load generator connects with: the dev CA and the client's certificate."""
    files = tls.clients[client]
    return tls.ca.read_bytes(), files.cert.read_bytes(), files.key.read_bytes()


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
    connections = min(args.concurrency, args.connections or args.concurrency)
    _say(
        f"(b) end to end: {requests} × {args.batch} items through gRPC"
        f"{' with mutual TLS' if args.tls else ''}, {args.concurrency} in flight over "
        f"{connections} connection(s)" + (f", {args.runs} runs" if args.runs > 1 else "") + " …"
    )
    blobs = build_requests(args.batch, _ALG_PB[alg])
    with tempfile.TemporaryDirectory(prefix="hcert-bench-") as tmp:
        server, info = _start_server(args, workers, Path(tmp))
        info["pids"] = [server.pid, *info["pids"]]  # the front counts too
        load = _Load(f"127.0.0.1:{info['port']}", blobs, connections, info["client_tls"])
        try:
            ctx = multiprocessing.get_context("spawn")
            out = ctx.Queue()
            _run_load(ctx, load, args.concurrency * 2, args.concurrency, out, None)  # warm-up
            rss_before = _rss_mib(info["pids"])
            cpu_before = (_cpu_seconds(info["pids"]), _cpu_seconds(info["pids"][:1]))
            results = [
                _measured_load(ctx, load, requests, args, out, f"run {n + 1} of {args.runs}: ")
                for n in range(args.runs)
            ]
            rss_after = _rss_mib(info["pids"])
            server_cpu = _cpu_seconds(info["pids"]) - cpu_before[0]
            front_cpu = _cpu_seconds(info["pids"][:1]) - cpu_before[1]
            stream = _long_stream(ctx, load.address, blobs, args, info["pids"])
            unary = _one_item_calls(ctx, load.address, info["pids"], alg, args.unary_calls)
            fairness = _fairness(ctx, load, info, args, blobs, alg) if args.fairness else None
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    figures.update(_phase_b(results, raw, args, connections))
    figures["server_rss_mib_before"], figures["server_rss_mib_after"] = rss_before, rss_after
    per_item = 1e6 / max(1, figures["e2e_items"] - figures["e2e_rejected"])
    figures["server_cpu_us_per_item"] = round(server_cpu * per_item, 1)
    figures["front_cpu_us_per_item"] = round(front_cpu * per_item, 1)
    if stream is not None:
        figures["stream"] = stream
    if unary is not None:
        figures["one_item"] = unary
    if fairness is not None:
        figures["fairness"] = fairness
    print(_report(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if figures["e2e_rejected"]:
        _say(f"warning: {figures['e2e_rejected']} items were rejected during the run")
        return 1
    return 0


def _phase_b(
    results: list[dict[str, Any]], raw: float, args: argparse.Namespace, connections: int
) -> dict[str, Any]:
    """Phase (b)'s figures over its runs: the median run's rate is the one the ratio uses."""
    rates = [r["signed"] / r["seconds"] for r in results]
    middle = statistics.median(rates)
    median_run = min(results, key=lambda r: abs(r["signed"] / r["seconds"] - middle))
    signed = sum(r["signed"] for r in results)
    rejected = sum(r["rejected"] for r in results)
    return {
        "e2e_certs_per_s": round(middle),
        "e2e_items": signed + rejected,
        "e2e_rejected": rejected,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "connections": connections,
        "tls": "mutual" if args.tls else "none",
        "runs_certs_per_s": [round(rate) for rate in rates],
        "runs_largest_deviation": round(max(abs(r - middle) for r in rates) / middle, 3),
        "p50_batch_ms": median_run["latency_ms"]["p50"],
        "p99_batch_ms": median_run["latency_ms"]["p99"],
        "ratio": round(middle / raw, 3),
        "client_cpu_us_per_item": round(
            sum(r["client_cpu_seconds"] for r in results) / max(1, signed) * 1e6, 1
        ),
    }


class _Load(NamedTuple):
    """Where and how phase (b)'s load generator connects."""

    address: str
    blobs: list[bytes]
    connections: int
    tls: ClientPems | None


def _run_load(ctx: Any, load: _Load, requests: int, concurrency: int, out: Any, done: Any) -> Any:
    process = ctx.Process(
        target=run_load,
        args=(
            load.address,
            load.blobs,
            requests,
            concurrency,
            out,
            done,
            load.connections,
            load.tls,
        ),
    )
    process.start()
    if done is None:  # the warm-up: no progress to show
        out.get(timeout=300)
        process.join()
    return process


def _outcome(result: dict[str, Any]) -> str:
    return f"{result['signed']:,} signed, {result['rejected']:,} rejected"


def _measured_load(
    ctx: Any, load: _Load, requests: int, args: argparse.Namespace, out: Any, label: str
) -> dict[str, Any]:
    """Phase (b): ``requests`` batches from a load process, with progress on stderr."""
    done = ctx.Value("q", 0, lock=False)  # one writer: the load process
    process = _run_load(ctx, load, requests, args.concurrency, out, done)
    progress = Progress(sys.stderr, total=requests * args.batch)
    result = _wait_with_progress(out, process, done, progress, 3600, label if args.runs > 1 else "")
    process.join()
    return result


def _wait_with_progress(
    out: Any, process: Any, done: Any, progress: Progress, timeout: float, label: str = ""
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
        rate = result["signed"] / result["seconds"]
        progress.finish(
            result["signed"] + result["rejected"], f"{label}{_outcome(result)}, {rate:,.0f}/s"
        )
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


def _fairness(
    ctx: Any,
    load: _Load,
    info: dict[str, Any],
    args: argparse.Namespace,
    blobs: list[bytes],
    alg: Alg,
) -> dict[str, Any]:
    """Phase (e), optional: client B's latency alone and while client A floods."""
    _say(
        f"(e) fairness: client B's calls of {' and '.join(map(str, B_BATCHES))} item(s), "
        f"{args.fairness} each, alone, then while client A floods …"
    )
    return measure_fairness(
        ctx,
        load.address,
        (info["client_tls"], info["flood_tls"]),
        (blobs, args.concurrency),
        args.fairness,
        _ALG_PB[alg],
    )


def _report(f: dict[str, Any]) -> str:
    m = f["machine"]
    stream = f.get("stream")
    one = f.get("one_item")
    fair = f.get("fairness")
    fair_lines = (
        [
            f"(e) fairness: client A flooding ({fair['flood_calls_answered']:,} batches answered, "
            f"{fair['flood_calls_refused']:,} refused in {fair['flood_seconds']} s); "
            f"client B, {fair['calls']} calls one after the other:"
        ]
        + [
            f"    B's batches of {b['batch']}: alone p50 {b['alone_p50_ms']} ms, p99 "
            f"{b['alone_p99_ms']} ms; flooded p50 {b['flooded_p50_ms']} ms, p99 "
            f"{b['flooded_p99_ms']} ms: p99 {b['p99_ratio']:.2f}× alone"
            for b in fair["b"]
        ]
        if fair
        else []
    )
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
    runs = f["runs_certs_per_s"]
    runs_lines = (
        [
            f"    {len(runs)} runs: {', '.join(f'{r:,}' for r in runs)} certs/s; the median above, "
            f"the largest deviation from it {f['runs_largest_deviation']:.1%}"
        ]
        if len(runs) > 1
        else []
    )
    return "\n".join(
        [
            f"machine: {m['cpus']} CPU ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}",
            f"         Python {m['python']}, {m['softhsm'] and 'SoftHSM ' + m['softhsm']}, "
            f"python-pkcs11 {m['python-pkcs11']}, grpcio {m['grpcio']}, cbor2 {m['cbor2']}",
            f"alg {f['alg']}, {f['sessions']} HSM session(s) + the front, batch {f['batch']}, "
            f"{f['concurrency']} requests in flight over {f['connections']} connection(s), "
            f"TLS: {f['tls']}",
            f"(a) raw HSM signing:      {f['raw_sig_per_s']:>9,} sig/s",
            f"(b) end-to-end HC1 (gRPC): {f['e2e_certs_per_s']:>8,} certs/s "
            f"({f['e2e_items']:,} items, {f['e2e_rejected']} rejected)",
            *runs_lines,
            f"    batch latency p50 {f['p50_batch_ms']} ms, p99 {f['p99_batch_ms']} ms",
            f"    server RSS per process (MiB, front first): before {f['server_rss_mib_before']}, "
            f"after {f['server_rss_mib_after']}",
            f"    CPU per item: server {f['server_cpu_us_per_item']} µs (front + workers; front "
            f"{f['front_cpu_us_per_item']} µs), "
            f"load generator {f['client_cpu_us_per_item']} µs",
            f"ratio (b)/(a): {f['ratio']:.2f}",
            *stream_lines,
            *one_lines,
            *fair_lines,
        ]
    )
