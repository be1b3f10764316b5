"""One worker process: its own PKCS#11 login and session, one HSM thread, one gRPC server.

Workers are started with the ``spawn`` method, so PKCS#11 is loaded only after the process
exists (never inherited across fork). All PKCS#11 calls, key refreshes included, go through a
single-thread executor: python-pkcs11 must never be called from two threads of one process
(docs/adr/0001-process-per-core.md). Every worker binds the same port with SO_REUSEPORT.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.queues import Queue
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hsm import HsmError
from signer import metrics
from signer.api.v1 import signer_pb2, signer_pb2_grpc
from signer.config import Config
from signer.errors import SignerError
from signer.keys.officers import approval_policy
from signer.keys.registry import KeyRegistry
from signer.keys.state import KeyState
from signer.server.interceptors import ErrorInterceptor
from signer.server.servicer import SignerServicer
from signer.service import SigningService
from signer.token import open_token
from signer.verification import VerificationService

log = logging.getLogger(__name__)

SERVICE_NAME = signer_pb2.DESCRIPTOR.services_by_name["Signer"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def run_worker(config: Config, port: int, index: int, events: Queue[Any]) -> None:
    """Process entry point (spawned by the supervisor)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor owns Ctrl-C
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s worker-{index} %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_serve(config, port, index, events))
    except SignerError as e:
        events.put(("failed", index, os.getpid(), str(e)))
        raise SystemExit(1) from e


async def _serve(config: Config, port: int, index: int, events: Queue[Any]) -> None:
    loop = asyncio.get_running_loop()
    hsm_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hsm")
    token = await loop.run_in_executor(hsm_thread, open_token, config)
    registry = KeyRegistry(token, approval_policy(config), config.issuer.key_usage_days)
    service = SigningService(config, registry)

    # A full batch of maximal payloads must fit in one message (plus ids and framing).
    limit = max(4 << 20, config.server.max_batch * (config.server.max_payload_bytes + 1024))
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor()],
        options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
    )
    signer_pb2_grpc.add_SignerServicer_to_server(
        SignerServicer(
            service,
            VerificationService(config, registry),
            registry,
            hsm_thread,
            config.server.stream_window,
        ),
        server,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, _NOT_SERVING)
    server.add_insecure_port(f"{config.server.host}:{port}")

    async def refresh() -> None:
        try:
            await loop.run_in_executor(hsm_thread, registry.refresh, time.time())
            serving = registry.serving(time.time())
        except HsmError as e:
            metrics.HSM_ERRORS.inc()
            log.error("key refresh failed: %s", e)
            serving = False
        status = _SERVING if serving else _NOT_SERVING
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, status)
        _publish_key_metrics(registry, serving)

    await refresh()
    await server.start()
    # Everything loaded so far (modules, the 65 536-entry base45 table, protobuf descriptors)
    # lives as long as the process: keep it out of the collector's passes; and collect the young
    # generation every 50 000 allocations instead of 700, since a batch allocates ~20 containers
    # per item that reference counting frees anyway. py-spy: the cyclic GC took ~2 % of a busy
    # worker before this.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
    if not registry.serving(time.time()):
        log.warning("no active key with a currently valid DSC: health is NOT_SERVING")
    events.put(("ready", index, os.getpid(), ""))

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=config.hsm.key_refresh_seconds)
        except TimeoutError:
            await refresh()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace=5)
    await loop.run_in_executor(hsm_thread, token.close)
    hsm_thread.shutdown()


def _publish_key_metrics(registry: KeyRegistry, serving: bool) -> None:
    metrics.WORKER_READY.labels(str(os.getpid())).set(1 if serving else 0)
    for entry in registry.entries:
        kid = base64.b64encode(entry.dsc.kid).decode()
        metrics.DSC_NOT_AFTER.labels(kid, entry.label).set(entry.dsc.not_after)
        if entry.usage_end is not None:
            metrics.KEY_USAGE_END.labels(kid, entry.label).set(entry.usage_end)
        for state in KeyState:
            metrics.KEY_STATE.labels(kid, entry.label, state.value).set(
                1 if state is entry.state else 0
            )
