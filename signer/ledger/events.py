"""Key-management events in the ledger (issue 8 §3): one trail for signatures and key decisions.

Proposals, approvals, state changes and refusals — from the officers' CLI and from the servers
(a replayed key-state record) — are records of the ``key-events`` chain, in the same database
as the issuance records. Whoever writes takes the chain's lock in turn (waiting for it), checks
the chain against the head the token keeps, appends, and checkpoints the new head with the audit
key at once (``signer.ledger.anchor``): a key decision is anchored in the HSM the moment it is
made, so cutting or rewriting the trail shows in ``signer audit verify`` and stops the next
writer.

A JSON-lines trail from before (``[audit] path``) is imported once, when the log is first used:
its own hash chain must hold, each line becomes an event (its original time kept, marked
``imported``), and the file is renamed ``*.imported``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from hsm import HsmError, HsmToken
from signer.ledger import key_versions
from signer.ledger.anchor import HeadKeeper
from signer.ledger.checkpoints import Checkpoint, Head, key_id, unpack_head
from signer.ledger.records import decode_event, pack_event, signature_column
from signer.ledger.store import LedgerError, LedgerStore, open_reader, open_store

log = logging.getLogger(__name__)

KEY_EVENTS_CHAIN: Final = "key-events"
LOCK_WAIT_SECONDS: Final = 30.0
_GENESIS_TEXT: Final = "0" * 64


class KeyEventLog:
    """Appends to the ledger's key-events chain, anchored through ``token``."""

    def __init__(
        self,
        target: str,
        token: HsmToken,
        *,
        chain: str = KEY_EVENTS_CHAIN,
        wait: float = LOCK_WAIT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target, self.chain = target, chain
        self._keeper = HeadKeeper(token)
        self._wait = wait
        self._clock = clock

    def append(
        self,
        *,
        op: str,
        officers: Sequence[str],
        label: str,
        kid: str | None,
        params: Mapping[str, Any],
        outcome: str,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Record one event, durable and checkpointed in the HSM when this returns."""
        fields = {
            "op": op,
            "officers": list(officers),
            "label": label,
            "kid": kid,
            "params": dict(params),
            "outcome": outcome,
            "error": error,
        }
        self._write([(int(self._clock() * 1_000_000), fields)])
        return fields

    def accept_version(self, key_id: bytes, version: int) -> None:
        """The officers wrote this version of the key's state record: the ledger's floor for the
        key rises to it, so an older record is refused from now on (issue 8 §7)."""
        store = open_store(self.target, self.chain, wait=self._wait)
        try:
            key_versions.accept(store.sql, key_id, version, int(self._clock() * 1_000_000))
        finally:
            store.close()

    def entries(self) -> Iterator[dict[str, Any]]:
        return read_key_events(self.target, self.chain)

    def import_trail(self, path: Path) -> int:
        """Import the JSON-lines trail at ``path`` once (module docstring); the number of lines
        imported (0 when there is nothing to import)."""
        if not path.is_file():
            return 0
        lines = _read_trail(path)
        if not lines:
            return 0
        last = str(lines[-1]["hash"])
        events = [(_trail_time_us(line), _imported(line)) for line in lines]
        events.append(
            (
                int(self._clock() * 1_000_000),
                {
                    "op": "import-trail",
                    "officers": [],
                    "label": "",
                    "kid": None,
                    "params": {"file": str(path), "lines": len(lines), "last_hash": last},
                    "outcome": "ok",
                    "error": None,
                },
            )
        )
        if not self._imported_already(last):
            self._write(events)
        path.rename(path.with_name(path.name + ".imported"))
        return len(lines)

    def _imported_already(self, last_hash: str) -> bool:
        try:
            return any(
                e["op"] == "import-trail" and e["params"].get("last_hash") == last_hash
                for e in self.entries()
            )
        except LedgerError:
            return False  # no ledger yet: nothing imported

    def _write(self, events: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        store = open_store(self.target, self.chain, wait=self._wait)
        try:
            expected = self._matched(store)
            bodies = [pack_event(time_us, fields) for time_us, fields in events]
            records = store.append([(signature_column(body), body) for body in bodies])
            last = records[-1]
            head = Head(self.chain, last.seq, last.hash, int(self._clock() * 1_000_000))
            try:
                signed = self._keeper.advance(head, expected)
            except HsmError as e:
                # The event is durable; the token's head stays behind it (a head behind the
                # chain is sound) until the next event's checkpoint covers it. Raising here
                # would hide the outcome of the operation itself (e.g. a full token).
                log.warning("key event recorded, but the HSM did not checkpoint it yet: %s", e)
                return
            if isinstance(signed, bytes):
                raise LedgerError(
                    f"the HSM's head of the ledger chain {self.chain!r} moved while this run "
                    "held the chain: another process writes it without its lock"
                )
            public, signature = signed
            store.add_checkpoint(Checkpoint(head, key_id(public), signature))
        finally:
            store.close()

    def _matched(self, store: LedgerStore) -> bytes:
        """The token's head of the chain, after checking the ledger still holds it (fail closed:
        a cut or rewritten key trail stops every key operation until it is restored)."""
        try:
            stored = self._keeper.stored(self.chain)
        except HsmError as e:
            raise LedgerError(f"cannot read the ledger head kept in the HSM: {e}") from e
        if stored:
            held = unpack_head(self.chain, stored)
            if store.hash_at(held.seq) != held.hash:
                raise LedgerError(
                    f"the ledger's key-events chain does not hold the record {held.seq} the "
                    "HSM's checkpoint covers (cut off, rewritten or restored from an older "
                    "copy): nothing is recorded; run 'signer audit verify'"
                )
        return stored


def read_key_events(target: str, chain: str = KEY_EVENTS_CHAIN) -> Iterator[dict[str, Any]]:
    """Every event of the chain, oldest first, with its ``seq`` and ISO ``time``."""
    reader = open_reader(target)
    try:
        for record in reader.records(chain):
            event = decode_event(record.body)
            yield {"seq": record.seq, "time": _iso(event.time_us), **event.fields}
    finally:
        reader.close()


def _read_trail(path: Path) -> list[dict[str, Any]]:
    """The trail's lines after checking its own hash chain; LedgerError where it breaks."""
    lines: list[dict[str, Any]] = []
    prev = _GENESIS_TEXT
    with path.open(encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as e:
                raise _broken(path, number, f"not JSON ({e})") from e
            if not isinstance(line, dict) or line.get("prev") != prev:
                raise _broken(path, number, "its prev does not match the line before")
            if line.get("hash") != _trail_hash(prev, line):
                raise _broken(path, number, "its hash does not match its content")
            prev = str(line["hash"])
            lines.append(line)
    return lines


def _trail_hash(prev: str, line: Mapping[str, Any]) -> str:
    body = {k: v for k, v in line.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(prev.encode() + canonical.encode()).hexdigest()


def _broken(path: Path, number: int, why: str) -> LedgerError:
    return LedgerError(
        f"the key audit trail {path} is broken at line {number}: {why}; it is not imported "
        "into the ledger. Keep it as evidence, move it out of [audit] path, and go on"
    )


def _imported(line: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("op", "officers", "label", "kid", "params", "outcome", "error")
    return {k: line.get(k) for k in keep} | {"imported": True, "trail_hash": line.get("hash")}


def _trail_time_us(line: Mapping[str, Any]) -> int:
    try:
        return int(dt.datetime.fromisoformat(str(line["time"])).timestamp() * 1_000_000)
    except (KeyError, ValueError):
        return 0


def _iso(time_us: int) -> str:
    return dt.datetime.fromtimestamp(time_us / 1_000_000, dt.UTC).isoformat(timespec="seconds")
