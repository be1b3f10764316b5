"""Request ids of the one log line per RPC (issue 11 §2): a caller's plausible id is kept,
anything else replaced, so a log line never carries arbitrary caller text."""

from __future__ import annotations

import pytest

from signer.front.calls import request_id


@pytest.mark.parametrize(
    "sent", ["req-1", "0f8fad5b-d9cb-469f-a165-70867728950e", "trace:abc.def_1", "a" * 64]
)
def test_a_plausible_request_id_is_kept(sent: str) -> None:
    assert request_id([("other", "x"), ("x-request-id", sent)]) == sent


@pytest.mark.parametrize(
    "sent", ["", "a" * 65, "has space", "line\nbreak", "-leading", "ünïcode", '{"json": 1}']
)
def test_anything_else_is_replaced_by_a_fresh_one(sent: str) -> None:
    made = request_id([("x-request-id", sent)])
    assert made != sent and len(made) == 16 and int(made, 16) >= 0


def test_without_one_each_call_gets_its_own() -> None:
    assert len({request_id(None) for _ in range(100)}) == 100
