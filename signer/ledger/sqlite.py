"""The ledger in SQLite: WAL mode, ``synchronous=FULL``, so a committed batch survives a crash.

One :class:`SqliteLedger` is the only writer of its chain — it holds an exclusive lock on a file
beside the database for as long as it is open, so a second appliance configured with the same
chain is refused at start — and keeps the chain's head (last sequence number and hash) in
memory, advancing it only after a commit succeeds, so a failed write leaves no gap. All calls
come from one thread (the front's ledger thread), or from a CLI.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from signer.ledger.checkpoints import Checkpoint, Head
from signer.ledger.records import GENESIS, Record, link
from signer.ledger.revocations import revoked_originals
from signer.ledger.store import LedgerError

SCHEMA = """
CREATE TABLE IF NOT EXISTS issuance (
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    signature BLOB NOT NULL,
    body BLOB NOT NULL,
    prev BLOB NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX IF NOT EXISTS issuance_signature ON issuance (signature);
CREATE TABLE IF NOT EXISTS heartbeat (chain TEXT PRIMARY KEY, time_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    head BLOB NOT NULL,
    time_us INTEGER NOT NULL,
    key BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE TABLE IF NOT EXISTS key_version (
    key_id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    time_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revocation (
    hash_type TEXT NOT NULL,
    hash BLOB NOT NULL,
    reason TEXT NOT NULL,
    officer TEXT NOT NULL,
    time_us INTEGER NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (hash_type, hash)
);
"""
_INSERT = "INSERT INTO issuance (chain, seq, signature, body, prev, hash) VALUES (?, ?, ?, ?, ?, ?)"


class SqliteLedger:
    def __init__(self, path: Path, chain: str, wait: float = 0.0) -> None:
        self.path = path
        self.chain = chain
        self._lock = _lock_chain(path, chain, wait)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.sql = SqliteSql(self._db, str(path))
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            row = self._db.execute(
                "SELECT seq, hash FROM issuance WHERE chain = ? ORDER BY seq DESC LIMIT 1",
                (chain,),
            ).fetchone()
        except (OSError, sqlite3.Error) as e:
            os.close(self._lock)
            raise LedgerError(f"cannot open the ledger {path}: {e}") from e
        # (seq, hash) of the last record, replaced whole so another thread never sees a torn pair
        self._tip: tuple[int, bytes] = (row[0], row[1]) if row else (0, GENESIS)

    @property
    def seq(self) -> int:
        """The sequence number of the chain's last record (0 when empty)."""
        return self._tip[0]

    @property
    def tip(self) -> tuple[int, bytes]:
        """(sequence number, chain hash) of the last record: (0, GENESIS) when empty."""
        return self._tip

    def hash_at(self, seq: int) -> bytes | None:
        """The chain hash of record ``seq`` of this chain (GENESIS for 0), None if absent."""
        if seq == 0:
            return GENESIS
        try:
            row = self._db.execute(
                "SELECT hash FROM issuance WHERE chain = ? AND seq = ?", (self.chain, seq)
            ).fetchone()
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read the ledger {self.path}: {e}") from e
        return row[0] if row else None

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        head = checkpoint.head
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        head.chain,
                        head.seq,
                        head.hash,
                        head.time_us,
                        checkpoint.key,
                        checkpoint.signature,
                    ),
                )
        except sqlite3.Error as e:
            raise LedgerError(f"cannot write the ledger {self.path}: {e}") from e

    def append(self, items: Sequence[tuple[bytes, bytes]]) -> list[Record]:
        """Number, chain and commit ``(signature hash, body)`` pairs in one transaction; all or
        nothing."""
        (seq, prev), records, chain = self._tip, [], self.chain
        for offset, (signature, body) in enumerate(items, start=1):
            record = link(chain, seq + offset, signature, body, prev)
            records.append(record)
            prev = record.hash
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_INSERT, records)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite rolls back by itself on a full disk
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise LedgerError(f"cannot write the ledger {self.path}: {e}") from e
        if records:
            self._tip = (records[-1].seq, records[-1].hash)
        return records

    def known(self, signatures: Collection[bytes]) -> set[bytes]:
        """Which of these SIGNATURE hashes any chain of the ledger has a record of."""
        wanted, found = list(signatures), set[bytes]()
        try:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                rows = self._db.execute(
                    "SELECT signature FROM issuance WHERE signature IN "  # noqa: S608 - ? only
                    f"({', '.join('?' * len(part))})",
                    part,
                )
                found.update(row[0] for row in rows)
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read the ledger {self.path}: {e}") from e
        return found

    def revoked(self, signatures: Collection[bytes]) -> set[bytes]:
        return revoked_originals(self.sql, signatures)

    def probe(self) -> None:
        """A small durable write: does the ledger take writes again?"""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO heartbeat VALUES (?, strftime('%s','now') * 1000000) "
                    "ON CONFLICT (chain) DO UPDATE SET time_us = excluded.time_us",
                    (self.chain,),
                )
        except sqlite3.Error as e:
            raise LedgerError(f"cannot write the ledger {self.path}: {e}") from e

    def close(self) -> None:
        self._db.close()
        os.close(self._lock)  # releases the chain


def _lock_chain(path: Path, chain: str, wait: float) -> int:
    """An exclusive lock on ``<ledger>.<chain digest>.lock``: one writer per chain (waited for
    up to ``wait`` seconds)."""
    name = hashlib.sha256(chain.encode()).hexdigest()[:16]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(f"{path.name}.{name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise LedgerError(f"cannot open the ledger {path}: {e}") from e
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LedgerError(_chain_taken(chain, str(path))) from None
            time.sleep(0.05)


def _chain_taken(chain: str, where: str) -> str:
    return (
        f"another running appliance writes the ledger chain {chain!r} in {where}: give each "
        "appliance its own [ledger] chain"
    )


class SqliteReader:
    """The ledger file opened read-only; a missing file is an error, never an empty ledger."""

    def __init__(self, path: Path) -> None:
        self.where = str(path)
        if not path.is_file():
            raise LedgerError(f"no ledger at {path}: check [ledger] path")
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            self.sql = SqliteSql(self._db, str(path))
        except sqlite3.Error as e:
            raise LedgerError(f"cannot open the ledger {path}: {e}") from e

    def chains(self) -> list[str]:
        try:
            rows = self._db.execute("SELECT DISTINCT chain FROM issuance ORDER BY chain")
            return [row[0] for row in rows]
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read the ledger {self.where}: {e}") from e

    def records(self, chain: str) -> Iterator[Record]:
        cursor = self._db.execute(
            "SELECT chain, seq, signature, body, prev, hash FROM issuance WHERE chain = ? "
            "ORDER BY seq",
            (chain,),
        )
        for row in cursor:
            yield Record(*row)

    def checkpoints(self, chain: str) -> list[Checkpoint]:
        try:
            cursor = self._db.execute(
                "SELECT seq, head, time_us, key, signature FROM checkpoint WHERE chain = ? "
                "ORDER BY seq",
                (chain,),
            )
            return [
                Checkpoint(Head(chain, seq, head, time_us), key, sig)
                for seq, head, time_us, key, sig in cursor
            ]
        except sqlite3.OperationalError:  # a ledger written before checkpoints existed
            return []

    def close(self) -> None:
        self._db.close()


class SqliteSql:
    """:class:`signer.ledger.store.Sql` on a SQLite connection."""

    def __init__(self, db: sqlite3.Connection, where: str) -> None:
        self._db, self.where = db, where

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(statement, params).fetchall()
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read the ledger {self.where}: {e}") from e

    def write(self, statement: str, params: Sequence[Any] = ()) -> None:
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(statement, params)
        except sqlite3.Error as e:
            raise LedgerError(f"cannot write the ledger {self.where}: {e}") from e

    def has_table(self, name: str) -> bool:
        found = self.rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return bool(found)

    def close(self) -> None:
        self._db.close()


def connect_sql(path: Path) -> SqliteSql:
    """The ledger file opened read-write beside a running appliance (WAL lets both write; a
    busy database is waited for up to 10 s). A missing file is an error."""
    if not path.is_file():
        raise LedgerError(f"no ledger at {path}: check [ledger] path")
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
    except sqlite3.Error as e:
        raise LedgerError(f"cannot open the ledger {path}: {e}") from e
    return SqliteSql(db, str(path))
