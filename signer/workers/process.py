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
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hsm import HsmError, HsmToken
from signer import metrics
from signer.config import Config
from signer.domain import CertType
from signer.errors import BackendError, KeyStateError, RequestError, SignerError
from signer.keys.csca import load_cscas
from signer.keys.registry import KeyRegistry
from signer.keys.roster import approval_policy
from signer.keys.state import KeyState
from signer.ledger.anchor import HeadKeeper
from signer.ledger.version_guard import LedgerVersionGuard
from signer.logs import RateLimitedLog, error_kind
from signer.service import SigningService
from signer.token import open_token
from signer.verification import VerificationService
from signer.workers import convert, wire

log = logging.getLogger(__name__)
#: A chunk's unexpected error is logged once per kind a minute, never a traceback per request.
limited_log = RateLimitedLog(log)

T = TypeVar("T")

#: Error kinds a chunk can end with; the front maps each to one gRPC status.
ERROR_KINDS: tuple[tuple[type[SignerError], str], ...] = (
    (RequestError, "request"),
    (KeyStateError, "key_state"),
    (BackendError, "backend"),
)


#: The exit status of a worker that lost the HSM: the front starts a new one through its
#: appliance-wide login backoff (issue 9 §4).
EXIT_HSM_LOST = 3
#: The worker's garbage collector once it serves: the young generation collected every 50 000
#: allocations, not 700 (ADR 0004).
GC_THRESHOLDS = (50_000, 20, 10)


def run(sock: socket.socket, config: Config, index: int) -> int:
    """Serve chunks until the front says stop or goes away, or the HSM is lost; the process
    exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the front owns Ctrl-C and SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.unraisablehook = _unraisable_once
    try:
        cscas = load_cscas(config)
        token = open_token(config)
    except SignerError as e:
        cause = _hsm_cause(e)
        code = cause.code if cause is not None else None
        if cause is not None:
            _count(cause)
        wire.send(sock, ("failed", str(e), code or type(e).__name__))
        return 1
    try:
        policy = approval_policy(config, token)  # the roster that chains from the pin
    except (SignerError, HsmError) as e:
        code = e.code if isinstance(e, HsmError) else None
        token.finalize()
        wire.send(sock, ("failed", str(e), code or type(e).__name__))
        return 1
    guard = LedgerVersionGuard(config.ledger_target, token, reporter=index == 0)
    registry = KeyRegistry(token, policy, cscas, config.issuer.key_usage_days, guard)
    worker = _Worker(config, token, registry, HeadKeeper(token))
    try:
        worker.refresh(sock)
        # Start-up objects live as long as the process: keep them out of the cyclic GC, and
        # collect the young generation less often (ADR 0004: ~2 % of a busy worker before).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        interval = config.hsm.key_refresh_seconds
        next_refresh = time.monotonic() + interval
        while worker.lost is None:
            wait = max(0.0, next_refresh - time.monotonic())
            readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                message = wire.receive(sock)
                if message is None or message[0] == "stop":
                    return 0
                wire.send(sock, worker.handle(message))
            if worker.lost is None and time.monotonic() >= next_refresh:
                worker.refresh(sock)
                next_refresh = time.monotonic() + interval
    finally:
        # Close the session and finalise the library: a worker that lost the HSM ends here,
        # and the front's login backoff starts the next one on a freshly loaded library.
        token.finalize()
    lost = worker.lost
    wire.send(sock, ("hsm_lost", lost.code or "NONE", str(lost)))
    return EXIT_HSM_LOST


class _Worker:
    def __init__(
        self, config: Config, token: HsmToken, registry: KeyRegistry, audit: HeadKeeper
    ) -> None:
        self._token = token
        self._registry = registry
        self._audit = audit
        self._service = SigningService(config, registry)
        self._verification = VerificationService(config, registry)
        self._reported: tuple[bool, bytes] | None = None
        self._refresh_problem = ""
        #: The HSM failure that ended this worker's session and login (device scope).
        self.lost: HsmError | None = None

    def refresh(self, sock: socket.socket) -> None:
        serving = False
        try:
            on_new_session_once(lambda: self._registry.refresh(time.time()), self._reopen)
            serving = self._registry.serving(time.time())
            self._refresh_problem = ""
        except HsmError as e:
            if e.scope == "operation":
                self._log_refresh_problem(f"key refresh failed: {e}")
            else:
                self.lost = e
        except Exception as e:
            # Issue 9 §5: one malformed object must not take every worker down; the keys
            # read before stay as they were, logged once per kind of problem.
            self._log_refresh_problem(f"key refresh failed: {type(e).__name__}: {e}")
            serving = self._registry.serving(time.time())
        _publish_key_metrics(self._registry, serving)
        # python-pkcs11 builds a class for every object a search returns, and a class is a
        # reference cycle: only the cyclic GC frees it. With the young generation collected
        # every 50 000 allocations (see run()) a busy worker left each refresh's classes
        # for tens of minutes, and its RSS grew all the while (docs/soak.md).
        gc.collect(1)
        status = (serving, convert.trust_list(self._registry))
        if status != self._reported:
            self._reported = status
            wire.send(sock, ("status", *status))

    def _log_refresh_problem(self, text: str) -> None:
        if text != self._refresh_problem:
            self._refresh_problem = text
            log.error("%s", text)

    def handle(self, message: tuple[Any, ...]) -> tuple[Any, ...]:
        chunk_id, kind, body, types = message
        try:
            return on_new_session_once(
                lambda: self._answer(chunk_id, kind, body, types), self._reopen
            )
        except HsmError as e:
            if e.scope != "operation":
                self.lost = e
            return ("error", chunk_id, "backend", f"the HSM failed: {e}")

    def _reopen(self) -> None:
        self._token.reopen()
        self._registry.forget_handles()
        self._registry.refresh(time.time())

    def _answer(self, chunk_id: int, kind: str, body: bytes, types: Any) -> tuple[Any, ...]:
        """The reply to one chunk; an HSM failure is raised as the :class:`HsmError`."""
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
        except HsmError:
            raise
        except SignerError as e:
            cause = _hsm_cause(e)
            if cause is not None:
                raise cause from e
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


def on_new_session_once(call: Callable[[], T], reopen: Callable[[], None]) -> T:
    """``call``; when it fails with an HSM error worth a new session (a lost session, a stale
    object handle, CKR_FUNCTION_FAILED), ``reopen`` and call once more. A chunk's results from
    the first try were never sent, so every item still gets exactly one. A second failure is
    raised as it is: the caller treats every scope but "operation" as a lost device."""
    try:
        return call()
    except HsmError as e:
        _count(e)
        if not e.worth_a_new_session:
            raise
        log.warning("HSM call failed (%s): opening a new session and trying once more", e.code)
    try:
        reopen()
        return call()
    except HsmError as e:
        _count(e)
        raise


def _hsm_cause(error: BaseException) -> HsmError | None:
    """The :class:`HsmError` an error was raised from, if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, HsmError):
            return seen
        seen = seen.__cause__
    return None


def _count(error: HsmError) -> None:
    metrics.HSM_ERRORS.labels(error.code or "NONE").inc()


_unraisable_seen: set[str] = set()


def _unraisable_once(unraisable: sys.UnraisableHookArgs) -> None:
    """python-pkcs11 ends an object search in ``__del__``; on a dead device that prints a
    traceback per search. One line per kind instead (issue 9: never a traceback per call)."""
    kind = type(unraisable.exc_value).__name__
    if kind not in _unraisable_seen:
        _unraisable_seen.add(kind)
        log.warning("PKCS#11 clean-up failed (%s); further ones are not logged", kind)


def _publish_key_metrics(registry: KeyRegistry, serving: bool) -> None:
    metrics.WORKER_READY.labels(str(os.getpid())).set(1 if serving else 0)
    metrics.KEYS_MISSING.set(len(registry.missing))
    now = time.time()
    active = [
        e
        for e in registry.entries
        if e.state is KeyState.ACTIVE and e.dsc.not_before <= now <= e.dsc.not_after
    ]
    for cert_type in CertType:
        metrics.ACTIVE_KEYS.labels(cert_type.value).set(
            sum(cert_type in e.dsc.types for e in active)
        )
    for entry in registry.entries:
        kid = base64.b64encode(entry.dsc.kid).decode()
        metrics.DSC_NOT_AFTER.labels(kid, entry.label).set(entry.dsc.not_after)
        if entry.usage_end is not None:
            metrics.KEY_USAGE_END.labels(kid, entry.label).set(entry.usage_end)
        for state in KeyState:
            metrics.KEY_STATE.labels(kid, entry.label, state.value).set(
                1 if state is entry.state else 0
            )
