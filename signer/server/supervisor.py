"""``signer serve``: start one worker process per core on one port, serve merged metrics,
restart workers that die, stop them all on SIGTERM / Ctrl-C.

The supervisor never loads PKCS#11. It reserves the port with a bound (not listening)
SO_REUSEPORT socket, so ``port = 0`` picks one free port that every worker then shares.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

from signer.config import Config
from signer.devsetup import prepare_dev_environment
from signer.errors import BackendError
from signer.token import resolve_module

START_TIMEOUT = 120.0
MAX_RESTARTS_PER_MINUTE = 5


@dataclass
class _Pool:
    config: Config
    port: int
    ctx: multiprocessing.context.SpawnContext = field(
        default_factory=lambda: multiprocessing.get_context("spawn")
    )
    workers: dict[int, SpawnProcess] = field(default_factory=dict)
    restarts: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events: multiprocessing.Queue[Any] = self.ctx.Queue()

    def start(self, index: int) -> None:
        from signer.server.worker import run_worker

        process = self.ctx.Process(
            target=run_worker,
            args=(self.config, self.port, index, self.events),
            name=f"hcert-worker-{index}",
        )
        process.start()
        self.workers[index] = process

    def wait_ready(self, indexes: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(indexes)
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendError(f"workers {sorted(waiting)} did not start in {timeout:.0f} s")
            try:
                kind, index, _pid, message = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                for i in waiting:
                    if not self.workers[i].is_alive():
                        raise BackendError(f"worker {i} exited while starting") from None
                continue
            if kind == "failed":
                raise BackendError(f"worker {index} could not start: {message}")
            waiting.discard(index)

    def stop(self) -> None:
        for process in self.workers.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: graceful stop in the worker
        deadline = time.monotonic() + 10
        for process in self.workers.values():
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def _reserve_port(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise BackendError(f"cannot bind {host}:{port}: {e.strerror}") from e
    return sock


def serve(
    config: Config, ready_file: Path | None = None, say: Callable[[str], None] = print
) -> int:
    prepare_dev_environment(config)
    resolve_module(config)  # fail fast on a missing module …
    config.read_pin()  # … or a missing PIN, before starting anything
    metrics_dir = tempfile.mkdtemp(prefix="hcert-signer-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the workers
    reservation = _reserve_port(config.server.host, config.server.port)
    port = reservation.getsockname()[1]
    pool = _Pool(config, port)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        count = config.server.worker_count()
        say(f"starting {count} worker process(es) on {config.server.host}:{port} …")
        for index in range(count):
            pool.start(index)
        pool.wait_ready(set(range(count)), START_TIMEOUT)
        metrics_port = _start_metrics(config, metrics_dir)
        info = {
            "host": config.server.host,
            "port": port,
            "metrics_port": metrics_port,
            "pids": [p.pid for p in pool.workers.values()],
        }
        if ready_file is not None:
            tmp = ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            tmp.replace(ready_file)
        say(_banner(config, port, metrics_port))
        while not stopping:
            time.sleep(0.5)
            _restart_dead(pool, metrics_dir, say)
        say("stopping workers …")
        return 0
    finally:
        pool.stop()
        reservation.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _restart_dead(pool: _Pool, metrics_dir: str, say: Callable[[str], None]) -> None:
    from prometheus_client import multiprocess

    for index, process in list(pool.workers.items()):
        if process.is_alive():
            continue
        if process.pid is not None:
            multiprocess.mark_process_dead(process.pid, metrics_dir)  # type: ignore[no-untyped-call]
        now = time.monotonic()
        pool.restarts = [t for t in pool.restarts if now - t < 60] + [now]
        if len(pool.restarts) > MAX_RESTARTS_PER_MINUTE:
            raise BackendError("workers keep dying (more than 5 restarts in a minute); giving up")
        say(f"worker {index} (pid {process.pid}) exited with {process.exitcode}; restarting it")
        with contextlib.suppress(queue.Empty):
            while True:
                pool.events.get_nowait()
        pool.start(index)
        pool.wait_ready({index}, START_TIMEOUT)


def _start_metrics(config: Config, metrics_dir: str) -> int:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    try:
        httpd, _thread = start_http_server(
            config.server.metrics_port, addr=config.server.metrics_host, registry=registry
        )
    except OSError as e:
        raise BackendError(
            f"cannot serve metrics on {config.server.metrics_host}:{config.server.metrics_port}: "
            f"{e.strerror}"
        ) from e
    return int(httpd.server_port)


def _banner(config: Config, port: int, metrics_port: int) -> str:
    host = config.server.host
    lines = [
        f"hcert-signer is serving gRPC on {host}:{port} "
        "(hcert.signer.v1.Signer, health, reflection)",
        f"metrics: http://{config.server.metrics_host}:{metrics_port}/metrics",
    ]
    if config.dev.bootstrap:
        lines += [
            "DEVELOPMENT MODE: SoftHSM token and dev CSCA under "
            f"{config.dev_dir} — NOT FOR PRODUCTION",
            "sign a sample:   .venv/bin/signer sign tests/vectors/sample.jsonl "
            f"--server {host}:{port}",
            f"trust list:     .venv/bin/signer trust-list --server {host}:{port} --out trust/",
        ]
    lines.append("stop with Ctrl-C")
    return "\n".join(lines)
