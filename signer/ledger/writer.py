"""The front's side of the ledger: batches wait for their records to be durable.

The database calls run on one thread of their own, so the event loop never waits on a disk. Batches
that finish while a commit is under way are committed together in the next one (group commit):
each batch waits for exactly the commit that holds its records. A failed commit fails every batch
in it (retryable) and marks the ledger unhealthy — the appliance reports NOT_SERVING and refuses
signing calls — until a probe write succeeds again, tried every ``PROBE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from signer import metrics
from signer.ledger.store import LedgerError, LedgerStore, open_store

log = logging.getLogger(__name__)

PROBE_SECONDS: Final = 1.0
T = TypeVar("T")


class LedgerWriter:
    """Opened with :meth:`open` once the front owns its port (so a second appliance on the same
    address is told about the port, not the ledger)."""

    def __init__(self, target: str, chain: str, on_health: Callable[[], None]) -> None:
        self._target, self._chain = target, chain
        self._store: LedgerStore | None = None
        self._on_health = on_health
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ledger")
        self._pending: list[tuple[Sequence[tuple[bytes, bytes]], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._probing: asyncio.Task[None] | None = None
        self._writable = True
        self._failure = ""
        # Until the checkpointer has matched the chain against the HSM's head, and for good
        # once it found them apart, the ledger is held: nothing signs.
        self._held: str | None = "the ledger's head is not yet checked against the HSM"
        self._final = False
        self.on_append: Callable[[int], None] = lambda count: None

    @property
    def healthy(self) -> bool:
        return self._writable and self._held is None

    @property
    def problem(self) -> str:
        return self._held or self._failure

    @property
    def held_for_good(self) -> bool:
        return self._final

    def hold(self, problem: str, *, final: bool = False) -> None:
        """Refuse signing until :meth:`release` (a probe write does not lift a hold); a
        ``final`` hold lasts as long as the process."""
        if self._held is None or final:
            log.error("signing stops: %s", problem)
        self._held, self._final = problem, self._final or final
        self._on_health()

    def release(self) -> None:
        if not self._final:
            self._held = None
            self._on_health()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the ledger's thread (the store is used from there alone)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def open(self) -> None:
        """Open the database and take this appliance's chain; :class:`LedgerError` if not."""
        self._store = open_store(self._target, self._chain)

    @property
    def store(self) -> LedgerStore:
        if self._store is None:
            raise LedgerError("the ledger is not open yet")
        return self._store

    async def record(self, entries: Sequence[tuple[bytes, bytes]]) -> None:
        """Return once ``(signature hash, body)`` entries are committed; raise
        :class:`LedgerError` if they cannot be."""
        if not entries:
            return
        future = asyncio.get_running_loop().create_future()
        self._pending.append((entries, future))
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush())
        await asyncio.shield(future)  # a caller who goes does not undo a commit under way

    async def known(self, signatures: Collection[bytes]) -> set[bytes]:
        """Which of these SIGNATURE hashes the ledger has a record of (any chain)."""
        if not signatures:
            return set()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.store.known, signatures)

    async def revoked(self, signatures: Collection[bytes]) -> set[bytes]:
        """Which of these SIGNATURE hashes belong to a revoked certificate."""
        if not signatures:
            return set()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.store.revoked, signatures)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group, self._pending = self._pending, []
                entries = [entry for batch, _ in group for entry in batch]
                started = time.perf_counter()
                try:
                    await loop.run_in_executor(self._thread, self.store.append, entries)
                except LedgerError as e:
                    metrics.LEDGER_WRITE_SECONDS.observe(time.perf_counter() - started)
                    self._fail(str(e))
                    for _, future in group:
                        if not future.done():
                            future.set_exception(LedgerError(str(e)))
                    continue
                metrics.LEDGER_WRITE_SECONDS.observe(time.perf_counter() - started)
                metrics.LEDGER_RECORDS.inc(len(entries))
                self.on_append(len(entries))
                for _, future in group:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._flushing = None

    def _fail(self, problem: str) -> None:
        metrics.LEDGER_FAILURES.inc()
        if self._writable:
            log.error("the ledger cannot be written; signing stops until it can: %s", problem)
        self._writable, self._failure = False, problem
        self._on_health()
        if self._probing is None:
            self._probing = asyncio.ensure_future(self._probe())

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(PROBE_SECONDS)
                try:
                    await loop.run_in_executor(self._thread, self.store.probe)
                except LedgerError as e:
                    self._failure = str(e)
                    continue
                log.warning("the ledger takes writes again; signing resumes")
                self._writable, self._failure = True, ""
                self._on_health()
                return
        finally:
            self._probing = None

    async def close(self) -> None:
        """Wait for commits under way, then close the database."""
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        if self._probing is not None:
            self._probing.cancel()
        if self._store is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._store.close)
        self._thread.shutdown()
