"""``signer serve``: the front process. It owns the gRPC port alone, terminates TLS, serves health,
reflection and metrics for the whole appliance, and runs the signing workers.

The front never loads PKCS#11 (the dev bootstrap runs in a short-lived child, the workers are
separate processes). The port is bound without SO_REUSEPORT before any worker starts, so a second
instance on the same address fails at once with a message instead of sharing the traffic.
On SIGTERM (or Ctrl-C) it drains: health turns NOT_SERVING, new calls and stream messages are
refused, calls in flight get ``[server] grace_seconds`` to finish, then the workers stop and the
process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signer.config import Config
from signer.devsetup import prepare_dev_environment
from signer.errors import BackendError, ConfigError
from signer.front.tls import check_listen_security
from signer.keys.csca import load_cscas
from signer.keys.roster import approval_policy
from signer.logs import configure as configure_logging
from signer.token import resolve_module

if TYPE_CHECKING:
    from signer.front.handlers import Front
    from signer.front.pool import WorkerPool
    from signer.ledger.checkpointer import Checkpointer
    from signer.ledger.writer import LedgerWriter

START_TIMEOUT = 120.0


def serve(
    config: Config, ready_file: Path | None = None, say: Callable[[str], None] = print
) -> int:
    """Run the appliance until SIGTERM; the exit status. ``say`` prints what the person at the
    console reads (the banner, start-up steps); with JSON logs those lines are log lines too, so
    that every line of the output parses."""
    configure_logging(config.log, "front")
    if config.log.format == "json":
        say = logging.getLogger("signer.front.server").info
    check_listen_security(config.server.host, config.tls)
    prepare_dev_environment(config, say)
    if config.dev.bootstrap:
        resolve_module(config)  # the dev token is made with SoftHSM, here and now
    else:
        try:
            resolve_module(config)
        except ConfigError as e:
            # Issue 9 §1: an HSM whose module is not mounted yet is an outage, not a reason to
            # exit: the port listens NOT_SERVING and the workers try once per login window.
            say(f"warning: {e}; serving NOT_SERVING until it appears")
    config.read_pin()  # fail fast on a missing PIN, before starting anything
    config.ledger_target  # noqa: B018 - … or no ledger: nothing is signed that is not recorded
    load_cscas(config)  # … or no readable CSCA: no DSC could be served
    approval_policy(config)  # … or an officer roster that does not chain from its pin
    metrics_dir = tempfile.mkdtemp(prefix="hcert-signer-metrics-")
    # Read by prometheus_client when it is first imported, here and in every worker.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return asyncio.run(_serve(config, ready_file, say, metrics_dir))
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def _serve(
    config: Config, ready_file: Path | None, say: Callable[[str], None], metrics_dir: str
) -> int:
    from grpc_health.v1 import health, health_pb2

    from signer.front.handlers import SERVICE, Front
    from signer.front.pool import WorkerPool
    from signer.ledger.writer import LedgerWriter

    health_servicer = health.aio.HealthServicer()
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    updates: set[asyncio.Task[None]] = set()

    def publish_health() -> None:
        """One answer for the whole appliance: SERVING while a worker can sign, the ledger takes
        writes and the front is not draining."""
        ready = pool.serving and ledger.healthy and not front.draining.is_set()
        for name in ("", SERVICE):
            task = asyncio.ensure_future(
                health_servicer.set(name, serving if ready else not_serving)
            )
            updates.add(task)
            task.add_done_callback(updates.discard)

    ledger = LedgerWriter(config.ledger_target, config.ledger_chain, publish_health)
    pool = WorkerPool(config, publish_health)
    front = Front(config, pool, ledger)
    checkpointer = _checkpointer(config, ledger, pool)
    for name in ("", SERVICE):
        await health_servicer.set(name, not_serving)
    server, port = _listen(config, front, health_servicer)
    ledger.open()
    await server.start()
    metrics_port = _start_metrics(config, metrics_dir, pool)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await _start_workers(pool, checkpointer, stop, say)
        if pool.serving and not ledger.healthy:
            say(f"the ledger is not signing yet: {ledger.problem}")
        if ready_file is not None:
            _write_ready(ready_file, config, port, metrics_port, pool.pids)
        say(_banner(config, port, metrics_port))
        if not pool.serving:
            say("no signing worker is serving yet (see the log above): health is NOT_SERVING")
        await stop.wait()
        say(f"draining: finishing calls in flight (up to {config.server.grace_seconds:g} s) …")
        front.draining.set()
        publish_health()
        await server.stop(config.server.grace_seconds)
    finally:
        front.close()
        await checkpointer.close()
        await pool.stop()
        await ledger.close()
    say("stopped")
    return 0


async def _start_workers(
    pool: WorkerPool, checkpointer: Checkpointer, stop: asyncio.Event, say: Callable[[str], None]
) -> None:
    """Start the workers and wait (up to START_TIMEOUT) for each to log in, then for the
    ledger's head to be matched against the HSM's."""
    say(f"starting {pool.size} signing worker(s) (HSM sessions) …")
    await pool.start()
    checkpointer.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not pool.started() and time.monotonic() < deadline and not stop.is_set():
        await asyncio.sleep(0.05)
    if pool.accepting:
        await checkpointer.anchored(timeout=10.0)


def _write_ready(path: Path, config: Config, port: int, metrics_port: int, pids: list[int]) -> None:
    """Where the appliance listens, for whoever started it (tests, scripts)."""
    info = {"host": config.server.host, "port": port, "metrics_port": metrics_port, "pids": pids}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


def _checkpointer(config: Config, ledger: LedgerWriter, pool: WorkerPool) -> Checkpointer:
    """Checkpoints of the ledger's head, signed by a worker like any chunk."""
    from signer.front.pool import Chunk, ChunkResult
    from signer.ledger.checkpointer import Checkpointer

    async def ask(kind: str, body: bytes) -> bytes:
        future: asyncio.Future[ChunkResult] = asyncio.get_running_loop().create_future()
        pool.submit(Chunk(kind, body, frozenset(), "ledger", None, future))
        return (await future).response

    return Checkpointer(
        ledger, ask, config.ledger.checkpoint_records, config.ledger.checkpoint_seconds
    )


def _listen(config: Config, front: Front, health_servicer: Any) -> tuple[Any, int]:
    """The gRPC server, bound to its address alone (no SO_REUSEPORT)."""
    import grpc
    from grpc_health.v1 import health, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    from signer.front.handlers import SERVICE
    from signer.front.tls import server_credentials

    # A full batch of maximal payloads must fit in one message (plus ids and framing).
    limit = max(4 << 20, config.server.max_batch * (config.server.max_payload_bytes + 1024))
    options: list[tuple[str, int]] = [
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
    ]
    if config.server.max_concurrent_streams:
        # A client's calls beyond this wait in its own gRPC library for a free stream.
        options.append(("grpc.max_concurrent_streams", config.server.max_concurrent_streams))
    server = grpc.aio.server(interceptors=[front.observer()], options=options)
    server.add_generic_rpc_handlers((front.handler(),))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{config.server.host}:{config.server.port}"
    cause: Exception | None = None
    try:
        if config.tls.enabled:
            port = server.add_secure_port(address, server_credentials(config.tls))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as e:
        port, cause = 0, e
    if not port:
        raise BackendError(
            f"cannot listen on {address}: the address is in use (is another signer serve "
            "running there?) or not local to this machine"
        ) from cause
    return server, port


def _start_metrics(config: Config, metrics_dir: str, pool: WorkerPool) -> int:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from signer.front.scrape import FrontCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    registry.register(FrontCollector(pool, os.getpid()))
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
    scheme = "mutual TLS" if config.tls.mutual else "TLS" if config.tls.enabled else "plaintext"
    lines = [
        f"hcert-signer is serving gRPC on {host}:{port} ({scheme}; hcert.signer.v1.Signer, "
        "health, reflection)",
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
