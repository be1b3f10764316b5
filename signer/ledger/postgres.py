"""The ledger in PostgreSQL (psycopg 3): one database for every replica that shares an HSM, so a
single query covers all of them, while each replica keeps its own chain.

A chain has one writer: :class:`PostgresLedger` holds a session-level advisory lock on it for as
long as its connection lives, so a second appliance configured with the same chain is refused
at start. A commit is durable when it returns (the server's ``synchronous_commit``, on by
default). When the connection breaks, the next call (the writer's probe) connects again, takes
the lock again and reads the chain's tip from the database; a batch whose commit was cut off
may then turn out to be recorded although it was answered UNAVAILABLE, which over-records and
never under-records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, Final

import psycopg

from signer.ledger.checkpoints import Checkpoint, Head
from signer.ledger.records import GENESIS, Record, link
from signer.ledger.revocations import revoked_originals
from signer.ledger.store import LedgerError

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS issuance (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    signature BYTEA NOT NULL,
    body BYTEA NOT NULL,
    prev BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX IF NOT EXISTS issuance_signature ON issuance (signature);
CREATE TABLE IF NOT EXISTS heartbeat (chain TEXT PRIMARY KEY, time_us BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    head BYTEA NOT NULL,
    time_us BIGINT NOT NULL,
    key BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE TABLE IF NOT EXISTS key_version (
    key_id BYTEA PRIMARY KEY,
    version BIGINT NOT NULL,
    time_us BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS revocation (
    hash_type TEXT NOT NULL,
    hash BYTEA NOT NULL,
    reason TEXT NOT NULL,
    officer TEXT NOT NULL,
    time_us BIGINT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (hash_type, hash)
);
"""
#: Advisory-lock class of this appliance's locks: 0x48434552 is "HCER".
_LOCKS: Final = 0x48434552
_SCHEMA_LOCK: Final = 0
_CONNECT: Final[dict[str, Any]] = {
    "connect_timeout": 5,
    "options": "-c statement_timeout=15000",
    "application_name": "hcert-signer",
}


class PostgresLedger:
    def __init__(self, url: str, chain: str, wait: float = 0.0) -> None:
        self.where = url
        self.chain = chain
        self._wait = wait
        self._db: psycopg.Connection[Any] | None = None
        self._tip: tuple[int, bytes] = (0, GENESIS)
        self._connect(first=True)
        self.sql = PostgresSql(self._connection, url)

    @property
    def seq(self) -> int:
        return self._tip[0]

    @property
    def tip(self) -> tuple[int, bytes]:
        return self._tip

    def append(self, items: Sequence[tuple[bytes, bytes]]) -> list[Record]:
        (seq, prev), records, chain = self._tip, [], self.chain
        for offset, (signature, body) in enumerate(items, start=1):
            record = link(chain, seq + offset, signature, body, prev)
            records.append(record)
            prev = record.hash
        db = self._connection()
        try:
            with (
                db.transaction(),
                db.cursor() as cursor,
                cursor.copy(
                    "COPY issuance (chain, seq, signature, body, prev, hash) FROM STDIN"
                ) as copy,
            ):
                for record in records:
                    copy.write_row(record)
        except psycopg.Error as e:
            raise self._failed("write", e) from e
        if records:
            self._tip = (records[-1].seq, records[-1].hash)
        return records

    def known(self, signatures: Collection[bytes]) -> set[bytes]:
        try:
            rows = self._connection().execute(
                "SELECT signature FROM issuance WHERE signature = ANY(%s)", (list(signatures),)
            )
            return {bytes(row[0]) for row in rows}
        except psycopg.Error as e:
            raise self._failed("read", e) from e

    def revoked(self, signatures: Collection[bytes]) -> set[bytes]:
        return revoked_originals(self.sql, signatures)

    def hash_at(self, seq: int) -> bytes | None:
        if seq == 0:
            return GENESIS
        try:
            row = (
                self._connection()
                .execute(
                    "SELECT hash FROM issuance WHERE chain = %s AND seq = %s", (self.chain, seq)
                )
                .fetchone()
            )
        except psycopg.Error as e:
            raise self._failed("read", e) from e
        return bytes(row[0]) if row else None

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        head = checkpoint.head
        try:
            self._connection().execute(
                "INSERT INTO checkpoint VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (chain, seq) "
                "DO UPDATE SET head = excluded.head, time_us = excluded.time_us, "
                "key = excluded.key, signature = excluded.signature",
                (
                    head.chain,
                    head.seq,
                    head.hash,
                    head.time_us,
                    checkpoint.key,
                    checkpoint.signature,
                ),
            )
        except psycopg.Error as e:
            raise self._failed("write", e) from e

    def probe(self) -> None:
        try:
            self._connection().execute(
                "INSERT INTO heartbeat VALUES (%s, (extract(epoch FROM now()) * 1000000)::bigint) "
                "ON CONFLICT (chain) DO UPDATE SET time_us = excluded.time_us",
                (self.chain,),
            )
        except psycopg.Error as e:
            raise self._failed("write", e) from e

    def close(self) -> None:
        if self._db is not None:
            self._db.close()  # ends the session, and with it the chain's lock
            self._db = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._db is None or self._db.closed or self._db.broken:
            self._connect(first=False)
        assert self._db is not None
        return self._db

    def _connect(self, *, first: bool) -> None:
        """Connect, take the chain's lock, and read its tip. After a lost connection the tip may
        only have moved forward (a commit cut off after the server made it durable)."""
        self.close()
        try:
            db = psycopg.connect(self.where, autocommit=True, **_CONNECT)
        except psycopg.Error as e:
            raise LedgerError(f"cannot connect to the ledger {self.where}: {_one_line(e)}") from e
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCKS, _SCHEMA_LOCK))
                db.execute(SCHEMA)
            deadline = time.monotonic() + (self._wait if first else 0.0)
            while not _try_lock(db, self.chain):
                if time.monotonic() >= deadline:
                    db.close()
                    raise LedgerError(
                        f"another running appliance writes the ledger chain {self.chain!r} in "
                        f"{self.where}: give each appliance its own [ledger] chain"
                    )
                time.sleep(0.05)
            last = db.execute(
                "SELECT seq, hash FROM issuance WHERE chain = %s ORDER BY seq DESC LIMIT 1",
                (self.chain,),
            ).fetchone()
        except psycopg.Error as e:
            db.close()
            raise LedgerError(f"cannot open the ledger {self.where}: {_one_line(e)}") from e
        tip = (int(last[0]), bytes(last[1])) if last else (0, GENESIS)
        if not first and tip[0] < self._tip[0]:
            db.close()
            raise LedgerError(
                f"the ledger chain {self.chain!r} in {self.where} ends at seq {tip[0]}, before "
                f"the {self._tip[0]} records this appliance committed: the database lost "
                "committed records (restored from an older copy?)"
            )
        self._db, self._tip = db, tip

    def _failed(self, what: str, error: psycopg.Error) -> LedgerError:
        return LedgerError(f"cannot {what} the ledger {self.where}: {_one_line(error)}")


def _try_lock(db: psycopg.Connection[Any], chain: str) -> bool:
    """Take the chain's advisory lock for this session if it is free."""
    row = db.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCKS, chain)).fetchone()
    return bool(row and row[0])


class PostgresReader:
    """The ledger database read in one read-only transaction, so every chain is seen as of one
    moment; a database without the ledger's tables is an error, never an empty ledger."""

    def __init__(self, url: str) -> None:
        self.where = url
        try:
            self._db = psycopg.connect(url, **_CONNECT)
            self._db.read_only = True
            row = self._db.execute("SELECT to_regclass('issuance') IS NOT NULL").fetchone()
        except psycopg.Error as e:
            raise LedgerError(f"cannot open the ledger {url}: {_one_line(e)}") from e
        if not row or not row[0]:
            self._db.close()
            raise LedgerError(f"no ledger in {url}: the database has no issuance table")
        self.sql = PostgresSql(lambda: self._db, url)

    def chains(self) -> list[str]:
        try:
            rows = self._db.execute("SELECT DISTINCT chain FROM issuance ORDER BY chain")
            return [row[0] for row in rows]
        except psycopg.Error as e:
            raise LedgerError(f"cannot read the ledger {self.where}: {_one_line(e)}") from e

    def records(self, chain: str) -> Iterator[Record]:
        with self._db.cursor(name="records") as cursor:
            cursor.itersize = 5000
            cursor.execute(
                "SELECT chain, seq, signature, body, prev, hash FROM issuance WHERE chain = %s "
                "ORDER BY seq",
                (chain,),
            )
            for name, seq, signature, body, prev, hash_ in cursor:
                yield Record(name, seq, bytes(signature), bytes(body), bytes(prev), bytes(hash_))

    def checkpoints(self, chain: str) -> list[Checkpoint]:
        rows = self._db.execute(
            "SELECT seq, head, time_us, key, signature FROM checkpoint WHERE chain = %s "
            "ORDER BY seq",
            (chain,),
        )
        return [
            Checkpoint(Head(chain, seq, bytes(head), time_us), bytes(key), bytes(signature))
            for seq, head, time_us, key, signature in rows
        ]

    def close(self) -> None:
        self._db.close()


class PostgresSql:
    """:class:`signer.ledger.store.Sql` on a PostgreSQL connection (``?`` becomes ``%s``)."""

    def __init__(self, connection: Callable[[], psycopg.Connection[Any]], where: str) -> None:
        self._connection, self.where = connection, where

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(_native(statement), params).fetchall()
        except psycopg.Error as e:
            raise LedgerError(f"cannot read the ledger {self.where}: {_one_line(e)}") from e

    def write(self, statement: str, params: Sequence[Any] = ()) -> None:
        db = self._connection()
        try:
            with db.transaction():
                db.execute(_native(statement), params)
        except psycopg.Error as e:
            raise LedgerError(f"cannot write the ledger {self.where}: {_one_line(e)}") from e

    def has_table(self, name: str) -> bool:
        row = self.rows("SELECT to_regclass(?) IS NOT NULL", (name,))
        return bool(row and row[0][0])

    def close(self) -> None:
        self._connection().close()


def connect_sql(url: str) -> PostgresSql:
    """The ledger database opened beside a running appliance (autocommit: each write its own
    transaction), its tables made when missing."""
    try:
        db = psycopg.connect(url, autocommit=True, **_CONNECT)
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCKS, _SCHEMA_LOCK))
            db.execute(SCHEMA)
    except psycopg.Error as e:
        raise LedgerError(f"cannot open the ledger {url}: {_one_line(e)}") from e
    return PostgresSql(lambda: db, url)


def _native(statement: str) -> str:
    return statement.replace("?", "%s")


def _one_line(error: psycopg.Error) -> str:
    return " ".join(str(error).split())
