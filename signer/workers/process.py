"""One signing worker: its own PKCS#11 login and session, and one thread for everything.

The worker's main thread is its HSM thread: it reads a chunk from the front, signs it, writes the
result, and re-reads the keys every ``key_refresh_seconds`` between chunks — python-pkcs11 is
never called from a second thread (ADR 0001). The front learns the worker's health and the trust
list from ``status`` messages sent whenever either changes.
"""

from __future__ import annotations

import base64
import gc
import logging
import os
import select
import signal
import socket
import time
from typing import Any

from hsm import HsmError
from signer import metrics
from signer.config import Config
from signer.errors import BackendError, KeyStateError, RequestError, SignerError
from signer.keys.csca import load_cscas
from signer.keys.officers import approval_policy
from signer.keys.registry import KeyRegistry
from signer.keys.state import KeyState
from signer.ledger.anchor import HeadKeeper
from signer.logs import RateLimitedLog, error_kind
from signer.service import SigningService
from signer.token import open_token
from signer.verification import VerificationService
from signer.workers import convert, wire

log = logging.getLogger(__name__)
#: A chunk's unexpected error is logged once per kind a minute, never a traceback per request.
limited_log = RateLimitedLog(log)

#: Error kinds a chunk can end with; the front maps each to one gRPC status.
ERROR_KINDS: tuple[tuple[type[SignerError], str], ...] = (
    (RequestError, "request"),
    (KeyStateError, "key_state"),
    (BackendError, "backend"),
)


def run(sock: socket.socket, config: Config, index: int) -> int:
    """Serve chunks until the front says stop or goes away; the process exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the front owns Ctrl-C and SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        cscas = load_cscas(config)
        token = open_token(config)
    except SignerError as e:
        wire.send(sock, ("failed", str(e)))
        return 1
    registry = KeyRegistry(token, approval_policy(config), cscas, config.issuer.key_usage_days)
    worker = _Worker(config, registry, HeadKeeper(token))
    worker.refresh(sock)
    # Start-up objects live as long as the process: keep them out of the cyclic GC, and collect
    # the young generation less often (ADR 0004: ~2 % of a busy worker before this).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
    interval = config.hsm.key_refresh_seconds
    next_refresh = time.monotonic() + interval
    try:
        while True:
            wait = max(0.0, next_refresh - time.monotonic())
            readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                message = wire.receive(sock)
                if message is None or message[0] == "stop":
                    return 0
                wire.send(sock, worker.handle(message))
            if time.monotonic() >= next_refresh:
                worker.refresh(sock)
                next_refresh = time.monotonic() + interval
    finally:
        token.close()


class _Worker:
    def __init__(self, config: Config, registry: KeyRegistry, audit: HeadKeeper) -> None:
        self._registry = registry
        self._audit = audit
        self._service = SigningService(config, registry)
        self._verification = VerificationService(config, registry)
        self._reported: tuple[bool, bytes] | None = None

    def refresh(self, sock: socket.socket) -> None:
        try:
            self._registry.refresh(time.time())
            serving = self._registry.serving(time.time())
        except HsmError as e:
            metrics.HSM_ERRORS.inc()
            log.error("key refresh failed: %s", e)
            serving = False
        _publish_key_metrics(self._registry, serving)
        status = (serving, convert.trust_list(self._registry))
        if status != self._reported:
            self._reported = status
            wire.send(sock, ("status", *status))

    def handle(self, message: tuple[Any, ...]) -> tuple[Any, ...]:
        chunk_id, kind, body, types = message
        try:
            issued: convert.Issued = []
            uvcis: convert.Uvcis = []
            if kind in ("SignBatch", "SignStream"):
                response, uvcis, issued = convert.sign_chunk(self._service, body, kind, types)
            elif kind == "Reissue":
                response, uvcis, issued = convert.reissue_chunk(self._service, body, types)
            elif kind == "Verify":
                response = convert.verify_chunk(self._verification, body)
            elif kind == "SignHash":
                response, issued = convert.sign_hash_chunk(self._service, body)
            elif kind == "LedgerHead":
                response = self._audit.stored(body.decode())
            elif kind == "Checkpoint":
                response = self._audit.checkpoint(body)
            else:
                return ("error", chunk_id, "request", f"unknown chunk kind {kind!r}")
        except HsmError as e:
            metrics.HSM_ERRORS.inc()
            return ("error", chunk_id, "backend", f"the HSM failed: {e}")
        except SignerError as e:
            for cls, name in ERROR_KINDS:
                if isinstance(e, cls):
                    return ("error", chunk_id, name, str(e))
            return ("error", chunk_id, "backend", str(e))
        except Exception as e:
            limited_log.error(
                error_kind(kind, e), "unexpected error in a %s chunk", kind, exc_info=True
            )
            return ("error", chunk_id, "internal", "")
        return ("done", chunk_id, response, uvcis, issued)


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
