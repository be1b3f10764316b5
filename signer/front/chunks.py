"""A batch as chunks and back, for the front's handlers: how large its chunks are, split a request
into chunk bodies, turn items of the joined responses into rejections (a UVCI repeated across
chunks, an original the ledger refuses), and the ledger entries of what is handed out.

Protobuf messages are touched only where an item changes; otherwise chunks stay bytes
(protobuf concatenation of repeated fields joins them).
"""

from __future__ import annotations

import time
from typing import Any

from signer import metrics
from signer.api.v1 import signer_pb2 as pb
from signer.front.checks import REQUESTS
from signer.front.pool import ChunkResult
from signer.ledger.records import pack_header

__all__ = [
    "RecentClients",
    "chunk_size",
    "ledger_entries",
    "refuse_repeated_uvcis",
    "rejected",
    "split",
]

MIN_CHUNK, MAX_CHUNK = 4, 128  # items
#: While another client has sent a batch (any call the workers serve: SignBatch, SignStream,
#: Reissue, Verify, SignHash) within SHARING_SECONDS, batches are cut into chunks of
#: SHARED_CHUNK items (~3 ms of SoftHSM signing and validation on one core).
SHARING_SECONDS = 1.0
SHARED_CHUNK = 32


class RecentClients:
    """Which clients sent the workers a batch lately: is the appliance shared right now?"""

    def __init__(self) -> None:
        self._asked: dict[str, float] = {}  # client → time of its latest batch

    def shared(self, client: str, now: float) -> bool:
        """Note that ``client`` asks now; True when another client asked within
        ``SHARING_SECONDS``."""
        self._asked[client] = now
        if len(self._asked) > 1:
            for other, asked in list(self._asked.items()):
                if now - asked > SHARING_SECONDS:
                    del self._asked[other]
        return len(self._asked) > 1


def chunk_size(items: int, *, shared: bool, idle_workers: int) -> int:
    """Items per chunk for a batch of ``items`` (ADR 0001):

    - on a shared appliance, short chunks of ``SHARED_CHUNK`` items: the fair queue serves
      clients in turn, chunk by chunk, so another client's next chunk never waits long behind
      this batch. The size is fixed, not scaled by the measured rate: under a flood that rate
      includes the flood's own overhead, and ever smaller chunks would add more of it;
    - for one client, the batch is spread over the idle workers (all of them when the pool is
      idle, so one batch gets every HSM session) and goes as one chunk when none is idle: every
      worker is busy anyway, and a chunk's fixed costs (framing, wake-ups, the claims head) are
      paid once.
    """
    size = SHARED_CHUNK if shared else -(-items // max(1, idle_workers))
    return min(MAX_CHUNK, max(MIN_CHUNK, size))


def rejected(response_bytes: bytes, errors: dict[int, tuple[str, str, str]]) -> bytes:
    """The chunk response with the items at these indexes turned from signed to rejected. The
    workers counted them as signed; they are counted again as ``withheld`` (signed, never
    handed out) with their error codes."""
    response = pb.SignBatchResponse.FromString(response_bytes)
    for index, (code, path, message) in errors.items():
        result = response.results[index]
        result.ClearField("signed")
        result.rejected.errors.add(code=code, path=path, message=message)
        metrics.ITEM_ERRORS.labels(code).inc()
    metrics.ITEMS.labels("withheld").inc(len(errors))
    return response.SerializeToString()


def ledger_entries(
    results: list[ChunkResult],
    refused: set[tuple[int, int]],
    rpc: str,
    client: str,
    operator: str | None,
) -> list[tuple[bytes, bytes]]:
    """(SIGNATURE hash, record body) of every item signed and returned as signed, in request
    order: the batch's header bytes once, then each item's part as its worker packed it."""
    header = pack_header(time.time_ns() // 1000, client, operator, rpc)
    return [
        (signature, header + item)
        for chunk, result in enumerate(results)
        for index, item, signature, _ in result.issued
        if (chunk, index) not in refused
    ]


def split(request: Any, raw: bytes, size: int) -> list[tuple[bytes, int]]:
    """The request as chunk bodies of at most ``size`` items and their item counts: the raw
    bytes when one chunk will do, else one message per slice of items with the request's other
    fields (alg, output, at, kid) copied."""
    count = len(request.items)
    if count <= size:
        return [(raw, count)]
    rest = type(request)()
    rest.CopyFrom(request)
    del rest.items[:]
    tail = rest.SerializeToString()
    bodies = []
    for start in range(0, count, size):
        part = type(request)()
        part.items.extend(request.items[start : start + size])
        bodies.append((part.SerializeToString() + tail, len(part.items)))
    return bodies


def refuse_repeated_uvcis(
    responses: list[bytes], uvcis: list[list[tuple[int, str, str]]], bodies: list[bytes], rpc: str
) -> set[tuple[int, int]]:
    """A UVCI signed in two chunks of one batch: the later item is refused as ``duplicate_uvci``
    (its signature never leaves the appliance), exactly as when both sit in one chunk. Returns
    the (chunk, item) of each refused item."""
    first: dict[str, tuple[int, int]] = {}
    repeated: dict[int, list[tuple[int, str, str, tuple[int, int]]]] = {}
    for chunk, entries in enumerate(uvcis):
        for item, path, uvci in entries:
            earlier = first.setdefault(uvci, (chunk, item))
            if earlier != (chunk, item):
                repeated.setdefault(chunk, []).append((item, path, uvci, earlier))
    for chunk, items in repeated.items():
        errors = {}
        for item, path, uvci, (earlier_chunk, earlier_item) in items:
            request: Any = REQUESTS[rpc].FromString(bodies[earlier_chunk])
            earlier_id = request.items[earlier_item].id
            message = (
                f'ci "{uvci}" repeats the UVCI of item {earlier_id!r} in this batch; '
                "each certificate needs its own UVCI"
            )
            errors[item] = ("duplicate_uvci", path, message)
        responses[chunk] = rejected(responses[chunk], errors)
    return {(chunk, item) for chunk, items in repeated.items() for item, *_ in items}
