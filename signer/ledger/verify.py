"""``signer audit verify``: walk each chain and name the first record that does not hold."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import NamedTuple

from signer.ledger.checkpoints import Checkpoint, Head, signed_by
from signer.ledger.records import GENESIS, Record, chain_hash, signature_column


class Finding(NamedTuple):
    chain: str
    seq: int  # the first bad sequence number
    problem: str


class ChainReport(NamedTuple):
    chain: str
    records: int
    finding: Finding | None
    hashes: dict[int, bytes]  # seq → chain hash, for the sequence numbers asked for


def verify_chain(
    chain: str, records: Iterable[Record], wanted: Collection[int] = ()
) -> ChainReport:
    """Check numbering from 1 without gaps, every ``prev`` link and every hash; stop at the
    first fault, since everything after it is unanchored. Keeps the hash of each ``wanted``
    sequence number (for :func:`verify_anchors`)."""
    expected, prev, count = 1, GENESIS, 0
    hashes = {0: GENESIS}
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
            return ChainReport(chain, count, Finding(chain, expected, problem), hashes)
        if record.prev != prev:
            problem = (
                f"record {record.seq} does not follow record {record.seq - 1}: a record was "
                "inserted, deleted or moved here"
            )
            return ChainReport(chain, count, Finding(chain, record.seq, problem), hashes)
        if chain_hash(record.prev, chain, record.seq, record.body) != record.hash:
            problem = f"record {record.seq} was changed after it was written"
            return ChainReport(chain, count, Finding(chain, record.seq, problem), hashes)
        try:
            signature = signature_column(record.body)
        except ValueError as e:
            return ChainReport(chain, count, Finding(chain, record.seq, str(e)), hashes)
        if signature != record.signature:
            problem = f"record {record.seq}: its signature column was changed after it was written"
            return ChainReport(chain, count, Finding(chain, record.seq, problem), hashes)
        if record.seq in wanted:
            hashes[record.seq] = record.hash
        prev, expected = record.hash, expected + 1
    return ChainReport(chain, count, None, hashes)


def verify_anchors(
    report: ChainReport,
    checkpoints: Sequence[Checkpoint],
    audit_key: bytes,
    token_head: Head | None,
) -> Finding | None:
    """Check an intact chain against its checkpoints (each signed by ``audit_key``, the audit
    public key's SPKI DER, read from the HSM or a pinned file) and against the head the token
    keeps. This finds what recomputed hashes hide: a rewritten stretch (between two checkpoints),
    and a cut tail or an older copy (the chain ends before a checkpoint or the token's head)."""
    chain, last = report.chain, report.records
    for checkpoint in checkpoints:
        if not signed_by(checkpoint, audit_key):
            return Finding(
                chain,
                checkpoint.head.seq,
                f"the checkpoint of record {checkpoint.head.seq} is not signed by the HSM's audit "
                "key: it was forged or changed",
            )
    anchors = [(c.head, "a checkpoint signed by the HSM") for c in checkpoints]
    if token_head is not None:
        anchors.append((token_head, "the head the HSM keeps"))
    good = 0
    for head, what in sorted(anchors, key=lambda anchor: anchor[0].seq):
        ours = report.hashes.get(head.seq)
        if head.seq > last:
            return Finding(
                chain,
                last + 1,
                f"records {last + 1}–{head.seq} are missing: {what} covers record {head.seq}, "
                f"the chain ends at {last} (cut off, or restored from an older copy)",
            )
        if ours != head.hash:
            return Finding(
                chain,
                good + 1,
                f"records {good + 1}–{head.seq} were rewritten: the chain's hash at {head.seq} is "
                f"not the one in {what} (the first changed record is in this range)",
            )
        good = head.seq
    return None
