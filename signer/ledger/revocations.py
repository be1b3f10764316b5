"""Every SQL statement about revocations, in one place, for SQLite and PostgreSQL alike.

One table beside the issuance records (each store creates it with its own column types): a row
per revoked hash, its primary key the hash type and the hash, so revoking the same hash twice
finds the first row (``INSERT … ON CONFLICT DO NOTHING``, which both speak). Revocations are not
part of any chain: each row carries the officer's own signature instead
(``signer.ledger.revoking``). The statements use only ``?`` placeholders (``Sql`` adapts them),
``IN`` lists of at most :data:`_IN_LIST` and standard types.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from signer.hcert.revocation import HashType
from signer.ledger.records import Entry, decode, is_event
from signer.ledger.revoking import Revocation, candidates, revoked_by
from signer.ledger.store import LedgerError, Sql

_COLUMNS: Final = "hash_type, hash, reason, officer, time_us, signature"
_IN_LIST: Final = 500


def add(sql: Sql, revocation: Revocation) -> Revocation:
    """Store ``revocation`` unless its hash is revoked already; the row that stands."""
    sql.write(
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
    [row] = sql.rows(
        f"SELECT {_COLUMNS} FROM revocation WHERE hash_type = ? AND hash = ?",  # noqa: S608
        (revocation.hash_type.value, revocation.hash),
    )
    return _revocation(row)


def revocations(sql: Sql) -> list[Revocation]:
    """Every revocation, oldest first; none in a ledger written before revocations existed."""
    if not sql.has_table("revocation"):
        return []
    rows = sql.rows(f"SELECT {_COLUMNS} FROM revocation ORDER BY time_us")  # noqa: S608
    return [_revocation(row) for row in rows]


def entries_with_signature(sql: Sql, signatures: Collection[bytes]) -> list[Entry]:
    """The issuance records of these SIGNATURE hashes (by the indexed column), decoded."""
    found: list[Entry] = []
    for part in _parts(list(signatures)):
        rows = sql.rows(
            "SELECT body FROM issuance WHERE signature IN "  # noqa: S608 - ? only
            f"({', '.join('?' * len(part))})",
            part,
        )
        try:
            found.extend(decode(bytes(body)) for (body,) in rows if not is_event(bytes(body)))
        except ValueError as e:
            raise LedgerError(f"a ledger record does not decode: {e}") from e
    return found


def revoked_among(
    sql: Sql, wanted: Iterable[tuple[HashType, bytes]]
) -> set[tuple[HashType, bytes]]:
    """Which of these (type, hash) pairs are revoked."""
    pairs = set(wanted)
    if not pairs or not sql.has_table("revocation"):
        return set()
    found: set[tuple[HashType, bytes]] = set()
    for part in _parts(sorted({h for _, h in pairs})):
        rows = sql.rows(
            "SELECT hash_type, hash FROM revocation WHERE hash IN "  # noqa: S608 - ? only
            f"({', '.join('?' * len(part))})",
            part,
        )
        found.update((HashType(t), bytes(h)) for t, h in rows if (HashType(t), bytes(h)) in pairs)
    return found


def revoked_originals(sql: Sql, signatures: Collection[bytes]) -> set[bytes]:
    """Which of these SIGNATURE hashes belong to a certificate revoked by its SIGNATURE, UCI
    or COUNTRYCODEUCI hash (those of its issuance record)."""
    if not signatures:
        return set()
    entries = entries_with_signature(sql, signatures)
    revoked = revoked_among(sql, (pair for e in entries for pair in candidates(e)))
    return {e.signature for e in entries if revoked_by(e, revoked) is not None}


def _parts(values: list[bytes]) -> Iterable[list[bytes]]:
    for start in range(0, len(values), _IN_LIST):
        yield values[start : start + _IN_LIST]


def _revocation(row: tuple[str, bytes, str, str, int, bytes]) -> Revocation:
    hash_type, hash, reason, officer, time_us, signature = row
    return Revocation(
        HashType(hash_type), bytes(hash), reason, officer, int(time_us), bytes(signature)
    )
