"""Every SQL statement about revocations, in one place (a PostgreSQL port replaces this module).

One table beside the issuance records: a row per revoked hash, its primary key the hash type
and the hash, so revoking the same hash twice finds the first row (``INSERT … ON CONFLICT DO
NOTHING``, which SQLite and PostgreSQL both speak). Revocations are not part of any chain: each
row carries the officer's own signature instead (``signer.ledger.revoking``). The statements
use only ``?`` placeholders, ``IN`` lists of at most :data:`_IN_LIST` and standard types.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Final

from signer.hcert.revocation import HashType
from signer.ledger.records import Entry, decode
from signer.ledger.revoking import Revocation, candidates, revoked_by
from signer.ledger.sqlite import LedgerError

SCHEMA: Final = """
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
_COLUMNS: Final = "hash_type, hash, reason, officer, time_us, signature"
_IN_LIST: Final = 500


def open_for_writing(path: Path) -> sqlite3.Connection:
    """The ledger opened to record revocations beside a running appliance (WAL lets both
    write; a busy database is waited for up to 10 s). A missing file is an error."""
    if not path.is_file():
        raise LedgerError(f"no ledger at {path}: check [ledger] path")
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
    except sqlite3.Error as e:
        raise LedgerError(f"cannot open the ledger {path}: {e}") from e
    return db


def add(db: sqlite3.Connection, revocation: Revocation) -> Revocation:
    """Store ``revocation`` unless its hash is revoked already; the row that stands."""
    try:
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                f"INSERT INTO revocation ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "  # noqa: S608
                "ON CONFLICT (hash_type, hash) DO NOTHING",
                (
                    revocation.hash_type.value,
                    revocation.hash,
                    revocation.reason,
                    revocation.officer,
                    revocation.time_us,
                    revocation.signature,
                ),
            )
            row = db.execute(
                f"SELECT {_COLUMNS} FROM revocation WHERE hash_type = ? AND hash = ?",  # noqa: S608
                (revocation.hash_type.value, revocation.hash),
            ).fetchone()
    except sqlite3.Error as e:
        raise LedgerError(f"cannot record the revocation: {e}") from e
    return _revocation(row)


def revocations(db: sqlite3.Connection) -> list[Revocation]:
    """Every revocation, oldest first; none in a ledger written before revocations existed."""
    try:
        rows = db.execute(f"SELECT {_COLUMNS} FROM revocation ORDER BY time_us").fetchall()  # noqa: S608
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return []
        raise LedgerError(f"cannot read the revocations: {e}") from e
    except sqlite3.Error as e:
        raise LedgerError(f"cannot read the revocations: {e}") from e
    return [_revocation(row) for row in rows]


def entries_with_signature(db: sqlite3.Connection, signatures: Collection[bytes]) -> list[Entry]:
    """The issuance records of these SIGNATURE hashes (by the indexed column), decoded."""
    found: list[Entry] = []
    try:
        for part in _parts(list(signatures)):
            rows = db.execute(
                "SELECT body FROM issuance WHERE signature IN "  # noqa: S608 - ? only
                f"({', '.join('?' * len(part))})",
                part,
            )
            found.extend(decode(body) for (body,) in rows)
    except sqlite3.Error as e:
        raise LedgerError(f"cannot read the ledger: {e}") from e
    except ValueError as e:
        raise LedgerError(f"a ledger record does not decode: {e}") from e
    return found


def revoked_among(
    db: sqlite3.Connection, wanted: Iterable[tuple[HashType, bytes]]
) -> set[tuple[HashType, bytes]]:
    """Which of these (type, hash) pairs are revoked."""
    pairs = set(wanted)
    found: set[tuple[HashType, bytes]] = set()
    try:
        for part in _parts(sorted({h for _, h in pairs})):
            rows = db.execute(
                "SELECT hash_type, hash FROM revocation WHERE hash IN "  # noqa: S608 - ? only
                f"({', '.join('?' * len(part))})",
                part,
            )
            found.update((HashType(t), h) for t, h in rows if (HashType(t), h) in pairs)
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return set()
        raise LedgerError(f"cannot read the revocations: {e}") from e
    except sqlite3.Error as e:
        raise LedgerError(f"cannot read the revocations: {e}") from e
    return found


def revoked_originals(db: sqlite3.Connection, signatures: Collection[bytes]) -> set[bytes]:
    """Which of these SIGNATURE hashes belong to a certificate revoked by its SIGNATURE, UCI
    or COUNTRYCODEUCI hash (those of its issuance record)."""
    entries = entries_with_signature(db, signatures)
    revoked = revoked_among(db, (pair for e in entries for pair in candidates(e)))
    return {e.signature for e in entries if revoked_by(e, revoked) is not None}


def _parts(values: list[bytes]) -> Iterable[list[bytes]]:
    for start in range(0, len(values), _IN_LIST):
        yield values[start : start + _IN_LIST]


def _revocation(row: tuple[str, bytes, str, str, int, bytes]) -> Revocation:
    hash_type, hash, reason, officer, time_us, signature = row
    return Revocation(HashType(hash_type), hash, reason, officer, time_us, signature)
