"""The pool of signing workers as the front sees it: start, feed, watch, restart, stop.

Each worker is a ``python -m signer.workers`` process holding one end of a socket pair; the front
holds the other end as an asyncio stream. Chunks wait in a :class:`FairQueue` (one FIFO per
client, served round-robin, so one client's flood cannot starve another) and go to the worker
with the fewest chunks in flight, at most ``WINDOW`` each: one being signed and one waiting, so a
worker never idles between chunks. A chunk whose caller has gone (cancelled, deadline passed) is
dropped before it reaches a worker. A worker that dies has its chunks retried once on another
worker; it is restarted with backoff, and never while the appliance shuts down.
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


@dataclass(eq=False)
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    writer: asyncio.StreamWriter
    started: float
    in_flight: dict[int, Chunk] = field(default_factory=dict)
    status: bool | None = None  # None until its first report (logged in and keys read)
    failure: str = ""
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
        self._backlog = 0  # items of chunks queued or at a worker
        # one worker's, a moving average; until the first chunk is measured a cautious guess,
        # so that a flood arriving at a cold appliance does not queue past its deadlines
        self._seconds_per_item = INITIAL_SECONDS_PER_ITEM
        self._measured = False

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
        """Every worker has reported once (or failed and is waiting for its restart)."""
        return len(self._workers) == self.size and all(
            w.status is not None or w.failure for w in self._workers.values()
        )

    def submit(self, chunk: Chunk) -> None:
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
        for index in range(self.size):
            await self._spawn(index)

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
            worker.status = bool(serving)
            self.trust_list = trust_list
            self._on_change()
            self._pump()
        elif kind == "failed":
            worker.failure = str(message[1])
            log.error("worker %d could not start: %s", worker.index, worker.failure)
            self._on_change()

    def _measure(self, worker: _Worker, chunk: Chunk | None) -> None:
        """A worker signs its chunks one after the other: a chunk's own time is from when it was
        sent or the previous one came back, whichever is later."""
        now = asyncio.get_running_loop().time()
        if chunk is not None and chunk.items:
            per_item = (now - max(chunk.sent, worker.last_done)) / chunk.items
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
                chunk.future.set_exception(
                    ChunkError("backend", "the signing worker stopped while signing this batch")
                )
            else:
                chunk.retried = True
                self._queue.put(chunk.client, chunk)
        worker.in_flight.clear()
        self._on_change()
        if self._stopping:
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
