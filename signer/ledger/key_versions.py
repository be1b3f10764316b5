"""The highest key-state record version the ledger has accepted for each key (issue 8 §7).

TUF's versioned metadata is the model: a key-state record carries a version one higher than the
record it replaces, and a record below the highest version accepted for its key is a replay
(someone with the PIN wrote back an old "active" record of a retired key). The floor lives in
the ledger, not in the token the replay is written to, so it survives restarts and every
replica sharing the database sees it. It only ever rises.
"""

from __future__ import annotations

from signer.ledger.store import Sql


def floors(sql: Sql) -> dict[bytes, int]:
    """key id → the highest accepted version (none in a ledger from before versions)."""
    if not sql.has_table("key_version"):
        return {}
    return {
        bytes(key_id): int(version)
        for key_id, version in sql.rows("SELECT key_id, version FROM key_version")
    }


def accept(sql: Sql, key_id: bytes, version: int, time_us: int) -> None:
    """Raise the key's floor to ``version`` (never lowers it)."""
    sql.write(
        "INSERT INTO key_version (key_id, version, time_us) VALUES (?, ?, ?) "
        "ON CONFLICT (key_id) DO UPDATE SET version = excluded.version, "
        "time_us = excluded.time_us WHERE key_version.version < excluded.version",
        (key_id, version, time_us),
    )
