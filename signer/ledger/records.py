"""A ledger record: its compact binary body, its place in the hash chain, and its decoding.

A record's ``body`` is the batch's header (time, client, operator, RPC), the same bytes for
every item of the batch, followed by the item's part (kid, alg, type, iat, exp and revocation
hashes), which the worker packs as it signs. Both are fixed-layout binary, so the front only
concatenates bytes and hashes them: per item that is a few microseconds where encoding fields
one by one cost tens (docs/performance.md). ``hash = SHA-256(prev ‖ seq ‖ chain ‖ body)``.

A key-management event (issue 8 §3: proposals, approvals, state changes, refusals) is a record
too, in the same chains and tables: its body is a version-2 header (time) and the event as
canonical JSON, and its ``signature`` column holds the first 16 bytes of the body's SHA-256
(no certificate has it, so Reissue and revocations never match an event).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

GENESIS: Final = b"\0" * 32
VERSION: Final = 1
EVENT_VERSION: Final = 2
HASH_BYTES: Final = 16

_ALGS: Final = {"ES256": 1, "PS256": 2}
_TYPES: Final = {None: 0, "vaccination": 1, "test": 2, "recovery": 3}
_ALG_NAMES: Final = {v: k for k, v in _ALGS.items()}
_TYPE_NAMES: Final = {v: k for k, v in _TYPES.items()}
_HEADER = struct.Struct(">BQB")  # version, time in µs, has operator
_ITEM = struct.Struct(">BBBqqB")  # alg, type, which hashes are present, iat, exp, kid length
_UCI, _COUNTRY_UCI, _REPLACES = 1, 2, 4
_EVENT_HEADER = struct.Struct(">BQ")  # version, time in µs


class Entry(NamedTuple):
    """One signed item as the ledger records it (decoded)."""

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


class Event(NamedTuple):
    """A key-management event as the ledger records it (decoded)."""

    time_us: int
    fields: dict[str, Any]  # op, officers, label, kid, params, outcome, error, …


class Record(NamedTuple):
    """A numbered body as stored; ``signature`` repeats the body's for lookups."""

    chain: str
    seq: int
    signature: bytes
    body: bytes
    prev: bytes
    hash: bytes

    @property
    def entry(self) -> Entry:
        return decode(self.body)

    @property
    def is_event(self) -> bool:
        return is_event(self.body)


def pack_header(time_us: int, client: str, operator: str | None, rpc: str) -> bytes:
    texts = (client.encode(), (operator or "").encode(), rpc.encode())
    return _HEADER.pack(VERSION, time_us, operator is not None) + b"".join(
        struct.pack(">H", len(t)) + t for t in texts
    )


def pack_item(
    kid: bytes,
    alg: str,
    cert_type: str | None,
    iat: int | None,
    exp: int | None,
    uci: bytes | None,
    country_uci: bytes | None,
    signature: bytes,
    replaces: bytes | None,
) -> bytes:
    present = (
        (_UCI if uci is not None else 0)
        | (_COUNTRY_UCI if country_uci is not None else 0)
        | (_REPLACES if replaces is not None else 0)
    )
    head = _ITEM.pack(_ALGS[alg], _TYPES[cert_type], present, iat or 0, exp or 0, len(kid))
    return b"".join((head, kid, signature, uci or b"", country_uci or b"", replaces or b""))


def encode(entry: Entry) -> bytes:
    """The body of ``entry`` (the front builds the same bytes in two halves)."""
    return pack_header(entry.time_us, entry.client, entry.operator, entry.rpc) + pack_item(
        *entry[4:]
    )


def decode(body: bytes) -> Entry:
    """The entry a body holds; :class:`ValueError` for a body that is not one."""
    try:
        version, time_us, has_operator = _HEADER.unpack_from(body)
        if version != VERSION:
            raise ValueError(f"unknown record version {version}")
        offset, texts = _HEADER.size, []
        for _ in range(3):
            (length,) = struct.unpack_from(">H", body, offset)
            texts.append(body[offset + 2 : offset + 2 + length].decode())
            offset += 2 + length
        alg, cert_type, present, iat, exp, kid_length = _ITEM.unpack_from(body, offset)
        offset += _ITEM.size
        kid = body[offset : offset + kid_length]
        offset += kid_length
        fields: list[bytes | None] = []
        for flag in (0, _UCI, _COUNTRY_UCI, _REPLACES):
            if flag == 0 or present & flag:
                fields.append(body[offset : offset + HASH_BYTES])
                offset += HASH_BYTES
            else:
                fields.append(None)
        if offset != len(body) or any(f is not None and len(f) != HASH_BYTES for f in fields):
            raise ValueError("the record body has the wrong length")
        signature, uci, country_uci, replaces = fields
        assert signature is not None
        return Entry(
            time_us,
            texts[0],
            texts[1] if has_operator else None,
            texts[2],
            kid,
            _ALG_NAMES[alg],
            _TYPE_NAMES[cert_type],
            iat or None,
            exp or None,
            uci,
            country_uci,
            signature,
            replaces,
        )
    except (struct.error, UnicodeDecodeError, KeyError) as e:
        raise ValueError(f"the record body does not decode: {e}") from e


def pack_event(time_us: int, fields: Mapping[str, Any]) -> bytes:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _EVENT_HEADER.pack(EVENT_VERSION, time_us) + text.encode()


def is_event(body: bytes) -> bool:
    return body[:1] == bytes((EVENT_VERSION,))


def decode_event(body: bytes) -> Event:
    """The event a body holds; :class:`ValueError` for a body that is not one."""
    try:
        version, time_us = _EVENT_HEADER.unpack_from(body)
        if version != EVENT_VERSION:
            raise ValueError(f"not an event record (version {version})")
        fields = json.loads(body[_EVENT_HEADER.size :])
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"the event record does not decode: {e}") from e
    if not isinstance(fields, dict):
        raise ValueError("the event record does not decode: not a JSON object")
    return Event(time_us, fields)


def signature_column(body: bytes) -> bytes:
    """What the ``signature`` column holds for ``body``: the certificate's SIGNATURE hash, or
    for an event the first bytes of the body's SHA-256; ValueError for a body that decodes to
    neither."""
    if is_event(body):
        decode_event(body)
        return hashlib.sha256(body).digest()[:HASH_BYTES]
    return decode(body).signature


def chain_hash(prev: bytes, chain: str, seq: int, body: bytes) -> bytes:
    name = chain.encode()
    return hashlib.sha256(b"".join((prev, struct.pack(">QH", seq, len(name)), name, body))).digest()


def link(chain: str, seq: int, signature: bytes, body: bytes, prev: bytes) -> Record:
    """The record ``body`` becomes as number ``seq`` after the record whose hash is ``prev``."""
    return Record(chain, seq, signature, body, prev, chain_hash(prev, chain, seq, body))
