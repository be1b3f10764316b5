"""A ledger record, its canonical bytes and its place in the hash chain."""

from __future__ import annotations

import hashlib
from typing import Final, NamedTuple

import cbor2

GENESIS: Final = b"\0" * 32

#: The columns of a record in order; ``prev`` and ``hash`` follow them in the table.
COLUMNS: Final = (
    "chain",
    "seq",
    "time_us",
    "client",
    "operator",
    "rpc",
    "kid",
    "alg",
    "cert_type",
    "iat",
    "exp",
    "uci",
    "country_uci",
    "signature",
    "replaces",
)


class Entry(NamedTuple):
    """What the front knows of one signed item before the ledger numbers it."""

    time_us: int
    client: str
    operator: str | None
    rpc: str
    kid: bytes
    alg: str
    cert_type: str | None  # None for hash-only signatures
    iat: int | None
    exp: int | None
    uci: bytes | None
    country_uci: bytes | None
    signature: bytes  # the SIGNATURE revocation hash
    replaces: bytes | None  # Reissue: the SIGNATURE hash of the replaced certificate


class Record(NamedTuple):
    """A numbered entry as stored: ``hash = SHA-256(prev ‖ canonical CBOR of the fields)``."""

    chain: str
    seq: int
    entry: Entry
    prev: bytes
    hash: bytes

    def fields(self) -> tuple[object, ...]:
        return (self.chain, self.seq, *self.entry)


def canonical(fields: tuple[object, ...]) -> bytes:
    """Deterministic CBOR of the record's fields (an array: no map ordering to agree on)."""
    return cbor2.dumps(list(fields), canonical=True)


def chain_hash(prev: bytes, fields: tuple[object, ...]) -> bytes:
    return hashlib.sha256(prev + canonical(fields)).digest()


def link(chain: str, seq: int, entry: Entry, prev: bytes) -> Record:
    """The record ``entry`` becomes as number ``seq`` after the record whose hash is ``prev``."""
    return Record(chain, seq, entry, prev, chain_hash(prev, (chain, seq, *entry)))
