"""DCC revocation batches from ledger records, in the gateway's upload shape.

A batch (dgc-gateway ``RevocationBatchDto``; HCERT.md §9) is ``{country, expires, kid,
hashType, entries: [{hash}]}``: ``country`` the two-letter issuer, ``kid`` the DSC's kid in
base64, ``hashType`` SIGNATURE, UCI or COUNTRYCODEUCI, 1 to 1000 entries each the base64 of a
16-byte hash, and ``expires`` the date-time after which the gateway may drop the batch: here
the latest ``exp`` of the certificates whose hashes it holds.

One batch per kid and hash type, split at :data:`MAX_ENTRIES`. A SIGNATURE hash belongs to one
certificate, so those batches are written as soon as they fill; a UVCI is shared by a
certificate and its re-issues, so UCI and COUNTRYCODEUCI hashes are collected first and each
keeps the latest ``exp`` of the certificates (under that kid) that carry it.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any, Final

from signer.hcert.revocation import HashType
from signer.ledger.records import Entry
from signer.ledger.revoking import entry_hash

MAX_ENTRIES: Final = 1000


class BatchBuilder:
    """Feed (entry, hash types) pairs with :meth:`add`; each returns the batches it completed,
    :meth:`finish` the rest."""

    def __init__(self, country: str) -> None:
        self._country = country
        # (kid, type) → hash → latest exp; dicts keep insertion order, so output is stable
        self._open: dict[tuple[bytes, HashType], dict[bytes, int]] = {}

    def add(self, entry: Entry, types: Iterable[HashType]) -> list[dict[str, Any]]:
        if entry.exp is None:
            raise ValueError("a record without exp has no place in a revocation batch")
        done = []
        for hash_type in types:
            hash = entry_hash(entry, hash_type)
            if hash is None:
                continue
            group = self._open.setdefault((entry.kid, hash_type), {})
            group[hash] = max(group.get(hash, entry.exp), entry.exp)
            if hash_type is HashType.SIGNATURE and len(group) == MAX_ENTRIES:
                done.append(self._batch(entry.kid, hash_type, group))
                del self._open[(entry.kid, hash_type)]
        return done

    def finish(self) -> Iterator[dict[str, Any]]:
        for (kid, hash_type), group in sorted(self._open.items(), key=lambda kv: kv[0]):
            hashes = list(group.items())
            for start in range(0, len(hashes), MAX_ENTRIES):
                yield self._batch(kid, hash_type, dict(hashes[start : start + MAX_ENTRIES]))
        self._open = {}

    def _batch(self, kid: bytes, hash_type: HashType, group: dict[bytes, int]) -> dict[str, Any]:
        return {
            "country": self._country,
            "expires": _iso(max(group.values())),
            "kid": base64.b64encode(kid).decode(),
            "hashType": hash_type.value,
            "entries": [{"hash": base64.b64encode(h).decode()} for h in group],
        }


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
