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
RATE_WEIGHT = 0.1  # of the newest chunk in the moving average of seconds per item
#: ~10× an ECDSA signature with validation on SoftHSM (docs/performance.md): replaced by the
#: first chunk measured.
INITIAL_SECONDS_PER_ITEM = 0.001


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
    items: int = 0  # for the backlog estimate (0: a ledger chunk)
    sent: float = 0.0  # loop time it was written to a worker
    queued: float = 0.0  # loop time it was submitted


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
    last_done: float = 0.0  # loop time its last chunk came back: it signs one chunk at a time


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
        self._backlog = 0  # items of chunks queued or at a worker
        # one worker's, a moving average; until the first chunk is measured a cautious guess,
        # so that a flood arriving at a cold appliance does not queue past its deadlines
        self._seconds_per_item = INITIAL_SECONDS_PER_ITEM
        self._measured = False
        # both outcomes exported at 0 before the first loss, and counted through these
        self._lost_retried = metrics.LOST_CHUNKS.labels("retried")
        self._lost_unavailable = metrics.LOST_CHUNKS.labels("unavailable")

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

    def sessions(self) -> tuple[int, int]:
        """HSM sessions open (workers logged in) and in use (with a chunk at their worker);
        read by the metrics server's thread at scrape time, so from a snapshot."""
        workers = list(self._workers.values())
        return (
            sum(1 for w in workers if w.status is not None),
            sum(1 for w in workers if w.status is not None and w.in_flight),
        )

    def processes(self) -> list[tuple[int, int]]:
        """(index, pid) of every worker process running (a snapshot, for scrapes)."""
        return [(w.index, w.process.pid) for w in list(self._workers.values())]

    def started(self) -> bool:
        """The first login attempt is decided, and every started worker has reported once (or
        failed and waits for its restart)."""
        return not self._starting and all(
            w.status is not None or w.failure for w in self._workers.values()
        )

    def idle_workers(self) -> int:
        """Workers logged in with no chunk at them."""
        return sum(1 for w in self._workers.values() if w.status is not None and not w.in_flight)

    def submit(self, chunk: Chunk) -> None:
        chunk.queued = asyncio.get_running_loop().time()
        self._backlog += chunk.items
        chunk.future.add_done_callback(lambda _: self._left(chunk))
        self._queue.put(chunk.client, chunk)
        self._pump()

    def expected_seconds(self, items: int) -> float | None:
        """How long a batch of ``items`` submitted now would take to come back: the backlog
        ahead of it and itself, over the workers that sign, at the rate measured lately; None
        when no worker is ready. An estimate for admission (issue 9 §7): work that would
        come back after its caller's deadline is refused at once instead of signed for nobody."""
        ready = sum(1 for w in self._workers.values() if w.status is not None)
        if not ready:
            return None
        return (self._backlog + items) * self._seconds_per_item / ready

    def _left(self, chunk: Chunk) -> None:
        """The chunk's caller has its answer (or has gone): it leaves the backlog."""
        self._backlog -= chunk.items
        chunk.items = 0

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
            self._measure(worker, chunk)
            if chunk is not None and not chunk.future.done():
                chunk.future.set_result(ChunkResult(response, uvcis, issued))
            elif issued:
                metrics.DISCARDED.inc(len(issued))  # its caller left while it was being signed
            self._pump()
        elif kind == "error":
            _, chunk_id, error_kind, text = message
            chunk = worker.in_flight.pop(chunk_id, None)
            self._measure(worker, chunk)
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

    def _measure(self, worker: _Worker, chunk: Chunk | None) -> None:
        """A worker signs its chunks one after the other: a chunk's own time is from when it was
        sent or the previous one came back, whichever is later."""
        now = asyncio.get_running_loop().time()
        if chunk is not None and chunk.items:
            begun = max(chunk.sent, worker.last_done)
            metrics.CHUNK_QUEUE_SECONDS.observe(max(0.0, begun - chunk.queued))
            per_item = (now - begun) / chunk.items
            previous = self._seconds_per_item
            self._seconds_per_item = (
                previous + RATE_WEIGHT * (per_item - previous) if self._measured else per_item
            )
            self._measured = True
        worker.last_done = now

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
                self._lost_unavailable.inc()
                chunk.future.set_exception(
                    ChunkError("backend", "the signing worker stopped while signing this batch")
                )
            else:
                self._lost_retried.inc()
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
                metrics.CHUNKS_DROPPED.inc()
                continue  # the caller went away: nothing is signed for it
            if chunk.deadline is not None and now >= chunk.deadline:
                metrics.CHUNKS_DROPPED.inc()
                chunk.future.set_exception(ChunkError("gone", "deadline passed before signing"))
                continue
            chunk_id = next(self._ids)
            chunk.sent = now
            worker.in_flight[chunk_id] = chunk
            worker.writer.write(wire.encode((chunk_id, chunk.kind, chunk.body, chunk.types)))
