"""How the front cuts a batch into chunks: spread over idle workers for one client, short chunks
while clients share the appliance (issue 7 §1, §4), and the cut itself loses nothing."""

from __future__ import annotations

import pytest

from signer.api.v1 import signer_pb2 as pb
from signer.front.chunks import (
    MAX_CHUNK,
    MIN_CHUNK,
    SHARED_CHUNK,
    SHARING_SECONDS,
    RecentClients,
    chunk_size,
    split,
)


@pytest.mark.parametrize(
    ("items", "idle", "size"),
    [
        (100, 2, 50),  # an idle pool of two: one batch over both sessions
        (100, 16, 7),  # … of sixteen: over all of them
        (100, 0, 100),  # every worker busy: one chunk, its fixed costs paid once
        (100, 1, 100),
        (1000, 0, MAX_CHUNK),
        (5, 2, MIN_CHUNK),
        (1, 16, MIN_CHUNK),
    ],
)
def test_one_client_spreads_its_batch_over_the_idle_workers(
    items: int, idle: int, size: int
) -> None:
    assert chunk_size(items, shared=False, idle_workers=idle) == size


@pytest.mark.parametrize(("items", "idle"), [(1000, 0), (1000, 2), (100, 16)])
def test_a_shared_appliance_cuts_short_chunks(items: int, idle: int) -> None:
    assert chunk_size(items, shared=True, idle_workers=idle) == SHARED_CHUNK


def test_clients_share_the_appliance_while_both_asked_recently() -> None:
    recent = RecentClients()
    assert not recent.shared("a", 100.0)
    assert not recent.shared("a", 100.5)  # the same client again
    assert recent.shared("b", 100.6)
    assert recent.shared("a", 100.7)
    # b has not asked for longer than SHARING_SECONDS: a is alone again
    assert not recent.shared("a", 100.6 + SHARING_SECONDS + 0.01)
    assert recent.shared("b", 100.6 + SHARING_SECONDS + 0.02)


def _request(count: int) -> pb.SignBatchRequest:
    items = [pb.SignItem(id=f"i{n}", payload_json=f'{{"n": {n}}}') for n in range(count)]
    return pb.SignBatchRequest(items=items, alg=pb.ALGORITHM_PS256)


@pytest.mark.parametrize(("count", "size"), [(10, 10), (10, 20), (100, 16), (100, 7), (1, 4)])
def test_split_keeps_every_item_in_order_with_the_requests_other_fields(
    count: int, size: int
) -> None:
    request = _request(count)
    raw = request.SerializeToString()
    parts = split(request, raw, size)
    assert [n for _, n in parts] == [min(size, count - start) for start in range(0, count, size)]
    if count <= size:
        assert parts == [(raw, count)]  # the request's own bytes, not cut again
    ids = []
    for body, n in parts:
        part = pb.SignBatchRequest.FromString(body)
        assert len(part.items) == n
        assert part.alg == pb.ALGORITHM_PS256
        ids += [item.id for item in part.items]
    assert ids == [f"i{n}" for n in range(count)]
