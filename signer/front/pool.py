"""The pool of signing workers as the front sees it: start, feed, watch, restart, stop.

Each worker is a ``python -m signer.workers`` process holding one end of a socket pair; the front
holds the other end as an asyncio stream. Chunks wait in a :class:`FairQueue` (one FIFO per
client, served round-robin, so one client's flood cannot starve another) and go to the worker
with the fewest chunks in flight, at most ``WINDOW`` each: one being signed and one waiting, so a
worker never idles between chunks. A chunk whose caller has gone (cancelled, deadline passed) is
dropped before it reaches a worker. A worker that dies has its chunks retried once on another
worker; it is restarted with backoff, and never while the appliance shuts down.

Logging in is gated for the whole appliance (:class:`LoginGate`, issue 9 §1, §2, §4): while the
HSM is in trouble — at start, after a failed login, after a worker lost the HSM — one worker at
a time tries, once per backoff window; the others wait, parked, with no process, and start when
it has logged in. A worker that loses the HSM answers its chunk UNAVAILABLE, finalises the
library and exits; the worker started in its place loads the library afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from signer import metrics
from signer.config import Config
from signer.domain import CertType
from signer.front.login_gate import LoginGate
from signer.front.quotas import FairQueue
from signer.workers import wire

if TYPE_CHECKING:
    from signer.workers.convert import Issued, Uvcis

log = logging.getLogger(__name__)

WINDOW = 2  # chunks in flight per worker
MAX_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 60.0  # a worker that ran this long resets its backoff


class ChunkError(Exception):
    """A chunk ended without a result; ``kind`` says whose fault (request, key_state, backend,
    internal, gone)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ChunkResult(NamedTuple):
    response: bytes  # the serialised response of the chunk's items
    uvcis: Uvcis
    issued: Issued  # what the ledger must record before the response leaves


@dataclass(eq=False)
class Chunk:
    kind: str  # the RPC: SignBatch, SignStream, Reissue, Verify, SignHash
    body: bytes  # the serialised request of this chunk's items
    types: frozenset[CertType]
    client: str
    deadline: float | None  # loop time
    future: asyncio.Future[ChunkResult]
    retried: bool = False


@dataclass(eq=False)
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    writer: asyncio.StreamWriter
    started: float
    in_flight: dict[int, Chunk] = field(default_factory=dict)
    status: bool | None = None  # None until its first report (logged in and keys read)
    failure: str = ""
    failure_code: str = ""
    hsm_lost: str = ""  # why it lost the HSM after logging in (it exits next)


class WorkerPool:
    def __init__(self, config: Config, on_change: Callable[[], None]) -> None:
        self._config = config
        self._on_change = on_change
        self._queue: FairQueue[Chunk] = FairQueue()
        self._workers: dict[int, _Worker] = {}
        self._ids = itertools.count()
        self._failures: dict[int, int] = {}
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.trust_list: bytes | None = None
        self.size = config.hsm.session_count()
        self._gate = LoginGate()
        self._parked: set[int] = set()  # workers waiting for the login gate (no process)
        self._probe: tuple[int, asyncio.Future[tuple[bool, str, str]]] | None = None
        self._reviving = False
        self._starting = True  # until the first probe's outcome (and, on success, all started)
        self._relogin: set[int] = set()  # restarted after losing the HSM: a reconnect
        self._up = False
        self._down_since: float | None = None

    # -- what the front asks ---------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        return any(w.status for w in self._workers.values())

    @property
    def accepting(self) -> bool:
        """At least one worker is logged in and can take chunks."""
        return any(w.status is not None for w in self._workers.values())

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers.values()]

    def started(self) -> bool:
        """The first login attempt is decided, and every started worker has reported once (or
        failed and waits for its restart)."""
        return not self._starting and all(
            w.status is not None or w.failure for w in self._workers.values()
        )

    def submit(self, chunk: Chunk) -> None:
        self._queue.put(chunk.client, chunk)
        self._pump()

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._parked.update(range(self.size))
        self._revive()

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        for worker in self._workers.values():
            with contextlib.suppress(ConnectionError, RuntimeError):
                worker.writer.write(wire.encode(("stop",)))
        deadline = time.monotonic() + timeout
        for worker in list(self._workers.values()):
            while worker.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
        for task in self._tasks:
            task.cancel()
        if self._probe is not None and not self._probe[1].done():
            self._probe[1].cancel()

    async def _spawn(self, index: int) -> None:
        front_end, worker_end = socket.socketpair()
        process = subprocess.Popen(
            [sys.executable, "-m", "signer.workers", str(worker_end.fileno()), str(index)],
            pass_fds=[worker_end.fileno()],
        )
        worker_end.close()
        reader, writer = await asyncio.open_unix_connection(sock=front_end, limit=wire.MAX_FRAME)
        worker = _Worker(index, process, writer, time.monotonic())
        writer.write(wire.encode(("config", self._config)))
        self._workers[index] = worker
        self._keep(self._read(worker, reader))

    def _keep(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(wire.HEADER.size)
                (length,) = wire.HEADER.unpack(header)
                self._on_message(worker, wire.decode(await reader.readexactly(length)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        await self._lost(worker)

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "done":
            _, chunk_id, response, uvcis, issued = message
            chunk = worker.in_flight.pop(chunk_id, None)
            if chunk is not None and not chunk.future.done():
                chunk.future.set_result(ChunkResult(response, uvcis, issued))
            self._pump()
        elif kind == "error":
            _, chunk_id, error_kind, text = message
            chunk = worker.in_flight.pop(chunk_id, None)
            if chunk is not None and not chunk.future.done():
                chunk.future.set_exception(ChunkError(error_kind, text))
            self._pump()
        elif kind == "status":
            _, serving, trust_list = message
            first = worker.status is None
            worker.status = bool(serving)
            self.trust_list = trust_list
            if first:
                self._logged_in(worker)
            self._on_change()
            self._pump()
        elif kind == "failed":
            _, worker.failure, worker.failure_code = message
            if not self._settle_probe(worker, False, worker.failure, worker.failure_code):
                self._attempted(worker.index, False, worker.failure, worker.failure_code)
            self._on_change()
        elif kind == "hsm_lost":
            _, code, worker.hsm_lost = message
            worker.status = None  # no more chunks for it: it exits next
            self._gate.lost()
            log.warning("worker %d lost the HSM (%s): %s", worker.index, code, worker.hsm_lost)
            self._publish_up(f"{code}: {worker.hsm_lost}")
            self._on_change()

    async def _lost(self, worker: _Worker) -> None:
        """The worker's socket closed: it exited or was killed. Its chunks are retried once
        elsewhere (never delivered twice: the dead worker's results never arrived)."""
        code = await asyncio.get_running_loop().run_in_executor(None, worker.process.wait)
        if self._workers.get(worker.index) is worker:
            del self._workers[worker.index]
        worker.status = False
        for chunk in worker.in_flight.values():
            if chunk.future.done():
                continue
            if chunk.retried or self._stopping:
                metrics.LOST_CHUNKS.labels("unavailable").inc()
                chunk.future.set_exception(
                    ChunkError("backend", "the signing worker stopped while signing this batch")
                )
            else:
                metrics.LOST_CHUNKS.labels("retried").inc()
                chunk.retried = True
                self._queue.put(chunk.client, chunk)
        worker.in_flight.clear()
        self._settle_probe(worker, False, worker.failure or f"exited with {code}", "exit")
        self._publish_up(worker.failure or worker.hsm_lost or f"worker exited with {code}")
        self._on_change()
        if self._stopping:
            return
        if worker.failure or worker.hsm_lost or self._gate.trouble:
            # HSM trouble: the worker starts again through the appliance's login gate.
            if worker.hsm_lost or self._relogin:
                self._relogin.add(worker.index)
            if worker.hsm_lost:
                metrics.WORKER_RESTARTS.inc()
            self._parked.add(worker.index)
            self._fail_queued_unless_accepting()
            self._revive()
            return
        ran = time.monotonic() - worker.started
        failures = 0 if ran > STABLE_SECONDS else self._failures.get(worker.index, 0) + 1
        self._failures[worker.index] = failures
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (failures - 1)) if failures else 0.0
        log.warning(
            "worker %d (pid %d) exited with %s; restarting it in %.1f s",
            worker.index,
            worker.process.pid,
            code,
            delay,
        )
        metrics.WORKER_RESTARTS.inc()
        await asyncio.sleep(delay)
        if not self._stopping:
            await self._spawn(worker.index)
            self._pump()

    # -- the login gate ----------------------------------------------------------------------

    def _revive(self) -> None:
        if not self._reviving and not self._stopping:
            self._reviving = True
            self._keep(self._revive_parked())

    async def _revive_parked(self) -> None:
        """Start the parked workers: while the HSM is in trouble one probe per window, then,
        once it has logged in, all the others at once."""
        try:
            while self._parked and not self._stopping:
                if self._gate.trouble and not self.accepting:
                    await asyncio.sleep(self._gate.delay())
                    if self._stopping or not self._parked:
                        return
                    index = min(self._parked)
                    self._parked.discard(index)
                    outcome = asyncio.get_running_loop().create_future()
                    self._probe = (index, outcome)
                    await self._spawn(index)
                    ok, why, code = await outcome
                    self._probe = None
                    self._attempted(index, ok, why, code)
                    if not ok:
                        self._starting = False
                        continue
                for index in sorted(self._parked):
                    self._parked.discard(index)
                    await self._spawn(index)
                self._starting = False
        finally:
            self._reviving = False

    def _settle_probe(self, worker: _Worker, ok: bool, why: str, code: str) -> bool:
        """Tell the gate how the probe's login went; False when ``worker`` is no probe."""
        if self._probe is None or self._probe[0] != worker.index:
            return False
        if not self._probe[1].done():
            self._probe[1].set_result((ok, why, code))
        return True

    def _logged_in(self, worker: _Worker) -> None:
        self._settle_probe(worker, True, "", "")
        self._gate.succeeded()
        if worker.index in self._relogin:
            self._relogin.discard(worker.index)
            metrics.HSM_RECONNECTS.inc()
        self._publish_up("")

    def _attempted(self, index: int, ok: bool, why: str, code: str) -> None:
        """One log line per login attempt made through the gate (never the PIN)."""
        if ok:
            metrics.HSM_LOGIN_ATTEMPTS.labels("ok").inc()
            log.info("HSM login by worker %d succeeded; starting the other workers", index)
            return
        metrics.HSM_LOGIN_ATTEMPTS.labels("failed").inc()
        delay = self._gate.failed(code)
        log.error(
            "HSM login attempt %d (worker %d) failed: %s; next attempt in %.1f s (one attempt "
            "per window for the whole appliance)",
            self._gate.failures,
            index,
            why,
            delay,
        )

    def _publish_up(self, why: str) -> None:
        """The alert gauge and one log line at each end of an outage."""
        up = self.accepting
        metrics.HSM_UP.set(1 if up else 0)
        if up == self._up:
            return
        self._up = up
        now = time.monotonic()
        if not up and not self._stopping:
            self._down_since = now
            log.error("HSM outage: no signing worker is logged in (%s); calls get UNAVAILABLE", why)
        elif up and self._down_since is not None:
            log.warning("HSM back after %.1f s: signing again", now - self._down_since)
            self._down_since = None

    def _fail_queued_unless_accepting(self) -> None:
        """With no worker logged in, queued chunks are answered UNAVAILABLE now rather than
        waiting for the HSM's return (the client retries)."""
        if self.accepting:
            return
        while self._queue:
            chunk = self._queue.pop()
            if chunk is None:
                return
            if not chunk.future.done():
                chunk.future.set_exception(
                    ChunkError("backend", "no signing worker is logged in to the HSM; retry")
                )

    # -- dispatch --------------------------------------------------------------------------------

    def _pump(self) -> None:
        ready = [w for w in self._workers.values() if w.status is not None]
        now = asyncio.get_running_loop().time()
        while self._queue:
            worker = min(ready, key=lambda w: len(w.in_flight), default=None)
            if worker is None or len(worker.in_flight) >= WINDOW:
                return
            chunk = self._queue.pop()
            if chunk is None:
                return
            if chunk.future.done():
                continue  # the caller went away: nothing is signed for it
            if chunk.deadline is not None and now >= chunk.deadline:
                chunk.future.set_exception(ChunkError("gone", "deadline passed before signing"))
                continue
            chunk_id = next(self._ids)
            worker.in_flight[chunk_id] = chunk
            worker.writer.write(wire.encode((chunk_id, chunk.kind, chunk.body, chunk.types)))
