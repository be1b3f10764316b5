"""Where the ledger lives: SQLite (a file, the embedded default) or PostgreSQL (one database for
every replica that shares an HSM). Both keep the same tables and give the same two views.

A *target* names the ledger: a ``postgresql://`` (or ``postgres://``) URL is a PostgreSQL
database, anything else a SQLite file. A URL never carries a password: libpq reads it from the
environment (``PGPASSWORD``) or a password file (``PGPASSFILE``), like a PIN.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from signer.errors import BackendError, ConfigError
from signer.ledger.checkpoints import Checkpoint
from signer.ledger.records import Record

POSTGRES_SCHEMES = ("postgresql", "postgres")


class LedgerError(BackendError):
    """The ledger cannot be read or written; nothing that depends on it may proceed."""


class Sql(Protocol):
    """Plain statements on the ledger's database, for the tables beside the chains
    (revocations): ``?`` placeholders, errors raised as :class:`LedgerError`."""

    where: str

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def write(self, statement: str, params: Sequence[Any] = ()) -> None:
        """One statement in a transaction of its own, durable when this returns."""
        ...

    def has_table(self, name: str) -> bool: ...

    def close(self) -> None: ...


class LedgerStore(Protocol):
    """One appliance's chain, opened for writing: the only writer of that chain while open. All
    calls come from one thread (the front's ledger thread) or a CLI."""

    chain: str

    @property
    def sql(self) -> Sql:
        """The same database for plain statements (revocations, key versions)."""
        ...

    @property
    def seq(self) -> int:
        """The sequence number of the chain's last record (0 when empty)."""
        ...

    @property
    def tip(self) -> tuple[int, bytes]:
        """(sequence number, chain hash) of the last record: (0, GENESIS) when empty."""
        ...

    def append(self, items: Sequence[tuple[bytes, bytes]]) -> list[Record]:
        """Number, chain and commit ``(signature hash, body)`` pairs in one transaction; all or
        nothing."""
        ...

    def known(self, signatures: Collection[bytes]) -> set[bytes]:
        """Which of these SIGNATURE hashes any chain of the ledger has a record of."""
        ...

    def revoked(self, signatures: Collection[bytes]) -> set[bytes]:
        """Which of these SIGNATURE hashes belong to a revoked certificate (issue 8 §6)."""
        ...

    def hash_at(self, seq: int) -> bytes | None:
        """The chain hash of record ``seq`` of this chain (GENESIS for 0), None if absent."""
        ...

    def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    def probe(self) -> None:
        """A small durable write: does the ledger take writes again?"""
        ...

    def close(self) -> None: ...


class LedgerReader(Protocol):
    """Every chain of a ledger, read as stored (nothing checked)."""

    where: str

    @property
    def sql(self) -> Sql:
        """The same database for plain statements (revocations)."""
        ...

    def chains(self) -> list[str]: ...

    def records(self, chain: str) -> Iterator[Record]:
        """The chain's records in sequence order."""
        ...

    def checkpoints(self, chain: str) -> list[Checkpoint]:
        """The chain's checkpoints in sequence order."""
        ...

    def close(self) -> None: ...


def is_postgres(target: str) -> bool:
    return urlsplit(target).scheme in POSTGRES_SCHEMES


def check_target(target: str, source: str) -> str:
    """``target`` if it names a ledger without a password in it; ConfigError naming ``source``
    otherwise."""
    if not target:
        raise ConfigError(f"{source}: empty ledger location")
    if is_postgres(target):
        parts = urlsplit(target)
        if parts.password is not None or "password=" in parts.query:
            raise ConfigError(
                f"{source}: the PostgreSQL URL carries a password: give it in PGPASSWORD or a "
                "PGPASSFILE instead, never in a config file or on a command line"
            )
    return target


def open_store(target: str, chain: str, wait: float = 0.0) -> LedgerStore:
    """A chain of the ledger at ``target``, for writing: the appliance's own (refused at once
    when another holds it), or one that CLI runs take in turn (waited for up to ``wait``
    seconds)."""
    if is_postgres(target):
        from signer.ledger.postgres import PostgresLedger

        return PostgresLedger(target, chain, wait)
    from signer.ledger.sqlite import SqliteLedger

    return SqliteLedger(Path(target), chain, wait)


def open_reader(target: str) -> LedgerReader:
    """The ledger at ``target`` for reading; a missing ledger is an error, never an empty one."""
    if is_postgres(target):
        from signer.ledger.postgres import PostgresReader

        return PostgresReader(target)
    from signer.ledger.sqlite import SqliteReader

    return SqliteReader(Path(target))


def open_sql(target: str) -> Sql:
    """The ledger's database for the tables beside the chains, writable while an appliance runs
    (a busy SQLite file is waited for); a missing ledger is an error."""
    if is_postgres(target):
        from signer.ledger.postgres import connect_sql

        return connect_sql(target)
    from signer.ledger.sqlite import connect_sql as connect_sqlite

    return connect_sqlite(Path(target))
