"""``signer audit verify``: walk each chain and name the first record that does not hold."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from signer.ledger.records import GENESIS, Record, chain_hash, decode


class Finding(NamedTuple):
    chain: str
    seq: int  # the first bad sequence number
    problem: str


class ChainReport(NamedTuple):
    chain: str
    records: int
    finding: Finding | None


def verify_chain(chain: str, records: Iterable[Record]) -> ChainReport:
    """Check numbering from 1 without gaps, every ``prev`` link and every hash; stop at the
    first fault, since everything after it is unanchored."""
    expected, prev, count = 1, GENESIS, 0
    for record in records:
        count += 1
        if record.seq != expected:
            missing = (
                f"{expected}" if record.seq == expected + 1 else f"{expected}–{record.seq - 1}"
            )
            problem = (
                f"record(s) {missing} are missing (deleted)"
                if record.seq > expected
                else f"record {record.seq} appears twice or out of order"
            )
            return ChainReport(chain, count, Finding(chain, expected, problem))
        if record.prev != prev:
            problem = (
                f"record {record.seq} does not follow record {record.seq - 1}: a record was "
                "inserted, deleted or moved here"
            )
            return ChainReport(chain, count, Finding(chain, record.seq, problem))
        if chain_hash(record.prev, chain, record.seq, record.body) != record.hash:
            problem = f"record {record.seq} was changed after it was written"
            return ChainReport(chain, count, Finding(chain, record.seq, problem))
        try:
            signature = decode(record.body).signature
        except ValueError as e:
            return ChainReport(chain, count, Finding(chain, record.seq, str(e)))
        if signature != record.signature:
            problem = f"record {record.seq}: its signature column was changed after it was written"
            return ChainReport(chain, count, Finding(chain, record.seq, problem))
        prev, expected = record.hash, expected + 1
    return ChainReport(chain, count, None)
