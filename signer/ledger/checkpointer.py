"""The front's side of checkpoints (``signer.ledger.checkpoints``): when to make one, and what a
head that does not match the HSM's means.

At start the chain is matched against the head the token keeps for it: a ledger that ends before
that head, or holds another hash there, was cut short, rewritten or restored from an older copy,
and the appliance signs nothing (the ledger stays held; it takes an operator to look). Then a
checkpoint is made every ``records`` records or ``seconds`` seconds while records arrive, and a
last one at shutdown. The HSM work runs on a signing worker (``ask``), like any other chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from signer import metrics
from signer.ledger import checkpoints
from signer.ledger.checkpoints import Checkpoint, Head
from signer.ledger.store import LedgerError
from signer.ledger.writer import LedgerWriter

log = logging.getLogger(__name__)

#: Send a chunk of this kind and body to a signing worker; its response bytes.
Ask = Callable[[str, bytes], Awaitable[bytes]]

RETRY_SECONDS: Final = 1.0


class Checkpointer:
    def __init__(self, ledger: LedgerWriter, ask: Ask, records: int, seconds: float) -> None:
        self._ledger = ledger
        self._ask = ask
        self._every_records = records
        self._every_seconds = seconds
        self._expected: bytes | None = None  # the token's head value, once matched
        self._signed_seq = -1  # the last checkpoint's seq
        self._since = 0  # records appended since then
        self._wake = asyncio.Event()
        self._matched = False  # the start-up match done and its checkpoint made
        self._task: asyncio.Task[None] | None = None
        ledger.on_append = self._appended

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def anchored(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the start-up match and its first checkpoint (True once the
        ledger is released for signing, False at once when the chain and the HSM's head are
        apart)."""
        deadline = time.monotonic() + timeout
        while not self._matched and time.monotonic() < deadline:
            if self._ledger.held_for_good:
                return False
            await asyncio.sleep(0.02)
        return self._matched

    async def close(self, timeout: float = 10.0) -> None:
        """Stop, after a last checkpoint of whatever was recorded since the one before."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._expected is not None and self._ledger.store.seq != self._signed_seq:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._checkpoint(), timeout)

    def _appended(self, count: int) -> None:
        self._since += count
        if self._since >= self._every_records:
            self._wake.set()

    async def _run(self) -> None:
        while not await self._match():
            if self._ledger.held_for_good:
                return
            await asyncio.sleep(RETRY_SECONDS)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._every_seconds)
            self._wake.clear()
            if self._ledger.store.seq != self._signed_seq:
                with contextlib.suppress(_CheckpointError):
                    await self._checkpoint()

    async def _match(self) -> bool:
        """Match the chain against the token's head, then checkpoint it; False to retry."""
        chain = self._ledger.store.chain
        try:
            stored = await self._ask("LedgerHead", chain.encode())
        except Exception as e:  # any worker failure: retried
            log.warning("cannot read the ledger head kept in the HSM yet: %s", e)
            return False
        if stored:
            held = checkpoints.unpack_head(chain, stored)
            ours = await self._ledger.run(self._ledger.store.hash_at, held.seq)
            if ours != held.hash:
                self._ledger.hold(_apart(held, self._ledger.store.seq, ours is None), final=True)
                return False
        self._expected = stored
        try:
            await self._checkpoint()
        except _CheckpointError:
            self._expected = None
            return False
        self._ledger.release()
        self._matched = True
        return True

    async def _checkpoint(self) -> None:
        assert self._expected is not None
        seq, hash_ = self._ledger.store.tip
        head = Head(self._ledger.store.chain, seq, hash_, time.time_ns() // 1000)
        try:
            reply = checkpoints.unpack_reply(
                await self._ask("Checkpoint", checkpoints.pack_request(head, self._expected))
            )
        except Exception as e:
            metrics.LEDGER_CHECKPOINT_FAILURES.inc()
            log.warning("ledger checkpoint at seq %d failed (retried later): %s", seq, e)
            raise _CheckpointError from e
        if isinstance(reply, bytes):
            metrics.LEDGER_CHECKPOINT_FAILURES.inc()
            moved = checkpoints.unpack_head(head.chain, reply) if reply else None
            self._ledger.hold(
                f"the HSM's head of ledger chain {head.chain!r} moved to seq "
                f"{moved.seq if moved else 0} under this appliance: another appliance writes "
                "this chain; give each appliance its own [ledger] chain",
                final=True,
            )
            raise _CheckpointError
        public, signature = reply
        self._expected = checkpoints.pack_head(head)
        self._signed_seq, self._since = seq, 0
        try:
            await self._ledger.run(
                self._ledger.store.add_checkpoint,
                Checkpoint(head, checkpoints.key_id(public), signature),
            )
        except LedgerError as e:  # the token holds the head; the next checkpoint covers it
            log.warning("ledger checkpoint at seq %d not stored: %s", seq, e)
            metrics.LEDGER_CHECKPOINT_FAILURES.inc()
            return
        metrics.LEDGER_CHECKPOINTS.inc()


class _CheckpointError(Exception):
    """A checkpoint was not made (logged and counted where it failed)."""


def _apart(held: Head, seq: int, missing: bool) -> str:
    if missing:
        return (
            f"the ledger chain {held.chain!r} ends at seq {seq} but the HSM holds a checkpoint "
            f"of seq {held.seq}: records were cut off, or the database was restored from an "
            "older copy. Nothing is signed; run 'signer audit verify' and restore the ledger"
        )
    return (
        f"record {held.seq} of the ledger chain {held.chain!r} is not the one the HSM's "
        "checkpoint holds: the chain was rewritten. Nothing is signed; run 'signer audit verify'"
    )
