"""Admission quotas (token bucket, UTC day, in flight), RetryInfo trailers and the fair queue.

Every test passes the time as ``now``: nothing here reads a clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.config import ClientLimits, Config, QuotasConfig
from signer.domain import CertType
from signer.front.policy import Grant
from signer.front.quotas import (
    IN_FLIGHT_RETRY_SECONDS,
    Admission,
    FairQueue,
    Refusal,
    Ticket,
    retry_info_trailer,
)

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
MIDNIGHT = 1_800_057_600.0  # 2027-01-16T00:00:00Z


def _grant(
    identity: str = "a",
    rate: float = 100.0,
    burst: int = 1000,
    per_day: int = 0,
    in_flight: int = 1000,
) -> Grant:
    return Grant(
        identity=identity,
        known=True,
        permissions=frozenset({"sign"}),
        types=frozenset(CertType),
        limits=ClientLimits(
            items_per_second=rate,
            burst=burst,
            items_per_day=per_day,
            max_in_flight_items=in_flight,
        ),
    )


def _ticket(result: Ticket | Refusal) -> Ticket:
    assert isinstance(result, Ticket), result
    return result


def _refusal(result: Ticket | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


# Scenarios: a client's batches (items, seconds after T0, release the ticket at once?) and what
# the last one gets: "ok" or the refusal reason with its retry_after.
SCENARIOS: list[tuple[str, dict[str, Any], list[tuple[int, float, bool]], str, float]] = [
    ("a full bucket admits a burst", {}, [(1000, 0, True)], "ok", 0),
    ("an empty bucket waits for refill", {}, [(1000, 0, True), (50, 0, True)], "rate", 0.5),
    ("refill is rate × elapsed", {}, [(1000, 0, True), (50, 0.5, True)], "ok", 0),
    (
        "refill stops at the burst",
        {},
        [(1000, 0, True), (500, 100, True), (501, 100, True)],
        "rate",
        0.01,
    ),
    ("bigger than the burst", {"burst": 500}, [(501, 0, True)], "over_burst", 0),
    ("bigger than in flight", {"in_flight": 200}, [(201, 0, True)], "over_burst", 0),
    ("bigger than a day", {"per_day": 300}, [(301, 0, True)], "over_burst", 0),
    (
        "daily quota until midnight",
        {"per_day": 1500},
        [(1000, 0, True), (600, 3600, True)],
        "daily",
        MIDNIGHT - T0 - 3600,
    ),
    ("a new UTC day", {"per_day": 1500}, [(1000, 0, True), (600, MIDNIGHT - T0, True)], "ok", 0),
    (
        "client in flight",
        {"in_flight": 1000, "rate": 1e6, "burst": 2000},
        [(600, 0, False), (600, 0, False)],
        "client_in_flight",
        IN_FLIGHT_RETRY_SECONDS,
    ),
    (
        "released items free the client's in flight",
        {"in_flight": 1000, "rate": 1e6, "burst": 2000},
        [(600, 0, True), (600, 0, False)],
        "ok",
        0,
    ),
    (
        "daily wins over rate: the longest wait",
        {"per_day": 1000},
        [(1000, 0, True), (1, 1, True)],
        "daily",
        MIDNIGHT - T0 - 1,
    ),
    ("a clock step backwards refills nothing", {}, [(1000, 10, True), (1, 5, True)], "rate", 0.01),
]


@pytest.mark.parametrize(
    ("limits", "batches", "expected", "retry_after"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_admission_scenarios(
    limits: dict[str, Any],
    batches: list[tuple[int, float, bool]],
    expected: str,
    retry_after: float,
) -> None:
    admission = Admission(total_in_flight_items=100_000)
    grant = _grant(**limits)
    results = []
    for items, at, release in batches:
        result = admission.admit(grant, items, T0 + at)
        if release and isinstance(result, Ticket):
            result.release()
        results.append(result)
    assert all(isinstance(r, Ticket) for r in results[:-1])
    last = results[-1]
    if expected == "ok":
        assert isinstance(last, Ticket)
    else:
        refusal = _refusal(last)
        assert refusal.reason == expected
        assert refusal.retry_after == pytest.approx(retry_after, abs=1e-5)


def test_over_burst_tells_the_client_to_send_smaller_batches() -> None:
    refusal = _refusal(Admission(10_000).admit(_grant(burst=500), 501, T0))
    assert refusal.retry_after == 0 and "smaller batches" in refusal.message


def test_total_in_flight_is_shared_by_every_client() -> None:
    admission = Admission(total_in_flight_items=1500)
    first = _ticket(admission.admit(_grant("a"), 1000, T0))
    refusal = _refusal(admission.admit(_grant("b"), 600, T0))
    assert refusal.reason == "total_in_flight"
    assert refusal.retry_after == IN_FLIGHT_RETRY_SECONDS
    assert admission.total_in_flight == 1000 and admission.in_flight("b") == 0
    first.release()
    _ticket(admission.admit(_grant("b"), 600, T0))
    assert admission.total_in_flight == 600


def test_full_refuses_before_parsing_only_when_no_batch_could_be_admitted() -> None:
    """``full`` is the front's refusal before it parses a request: only when not even one item
    of the client could be admitted (the rest is ``admit``'s decision, after parsing)."""
    admission = Admission(total_in_flight_items=1500)
    assert admission.full(_grant("a", in_flight=1000)) is None
    first = _ticket(admission.admit(_grant("a", in_flight=1000), 999, T0))
    assert admission.full(_grant("a", in_flight=1000)) is None  # one more item would fit
    second = _ticket(admission.admit(_grant("a", in_flight=1000), 1, T0))
    refusal = admission.full(_grant("a", in_flight=1000))
    assert refusal is not None and refusal.reason == "client_in_flight"
    assert admission.full(_grant("b")) is None
    third = _ticket(admission.admit(_grant("b"), 500, T0))
    refusal = admission.full(_grant("c"))
    assert refusal is not None and refusal.reason == "total_in_flight"
    for ticket in (first, second, third):
        ticket.release()
    assert admission.full(_grant("a", in_flight=1000)) is None
    assert admission.full(_grant("c")) is None


@pytest.mark.parametrize(
    ("limit", "admitted"),
    [("total", 1500), ("client", 1200), ("day", 1300), ("burst", 1100)],
)
def test_each_limit_admits_exactly_up_to_itself(limit: str, admitted: int) -> None:
    """Batches of 100 at one instant: admitted until the limit is reached, not one item more."""
    admission = Admission(total_in_flight_items=1500 if limit == "total" else 100_000)
    grant = _grant(
        rate=1e-3,
        burst=1100 if limit == "burst" else 10_000,
        in_flight=1200 if limit == "client" else 10_000,
        per_day=1300 if limit == "day" else 0,
    )
    results = [admission.admit(grant, 100, T0) for _ in range(20)]
    assert sum(100 for r in results if isinstance(r, Ticket)) == admitted
    assert all(isinstance(r, Ticket) for r in results[: admitted // 100])
    assert isinstance(admission.admit(grant, 1, T0), Refusal)  # not one item more


def test_release_is_idempotent_and_refunds_neither_bucket_nor_day() -> None:
    admission = Admission(10_000)
    grant = _grant(per_day=1000)
    ticket = _ticket(admission.admit(grant, 1000, T0))
    assert admission.in_flight("a") == 1000 and not ticket.released
    ticket.release()
    ticket.release()
    assert ticket.released and admission.in_flight("a") == 0 and admission.total_in_flight == 0
    assert _refusal(admission.admit(grant, 1, T0)).reason == "daily"


def test_a_refusal_counts_nothing() -> None:
    admission = Admission(10_000)
    grant = _grant(rate=10.0, burst=1000, in_flight=1000)
    _ticket(admission.admit(grant, 900, T0))
    assert _refusal(admission.admit(grant, 200, T0)).reason == "rate"
    assert admission.in_flight("a") == 900
    _ticket(admission.admit(grant, 100, T0))  # the refused 200 took no tokens


def test_admit_needs_at_least_one_item() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        Admission(10).admit(_grant(), 0, T0)


def test_from_config_takes_the_appliance_wide_limit() -> None:
    assert (
        Admission.from_config(Config(quotas=QuotasConfig(total_in_flight_items=1234))).total_limit
        == 1234
    )


# Hypothesis: random batches, pauses and releases; the invariants hold after every step.
_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.integers(min_value=1, max_value=400),
        st.floats(min_value=0, max_value=3, allow_nan=False),
        st.booleans(),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    steps=_STEPS,
    rate=st.floats(min_value=1, max_value=1000),
    burst=st.integers(min_value=400, max_value=2000),
    in_flight=st.integers(min_value=400, max_value=1500),
    total=st.integers(min_value=400, max_value=2500),
)
def test_limits_always_hold(
    steps: list[tuple[str, int, float, bool]],
    rate: float,
    burst: int,
    in_flight: int,
    total: int,
) -> None:
    admission = Admission(total)
    grants = {c: _grant(c, rate=rate, burst=burst, in_flight=in_flight) for c in "ab"}
    open_tickets: list[tuple[str, Ticket]] = []
    admitted = {"a": 0, "b": 0}
    now = T0
    for client, items, pause, release_oldest in steps:
        now += pause
        result = admission.admit(grants[client], items, now)
        if isinstance(result, Ticket):
            admitted[client] += items
            open_tickets.append((client, result))
        else:
            assert result.retry_after >= 0
        if release_oldest and open_tickets:
            _, ticket = open_tickets.pop(0)
            ticket.release()
            ticket.release()  # idempotent: counted once
        for c in "ab":
            # the bucket never admits more than burst + rate × elapsed
            assert admitted[c] <= burst + rate * (now - T0) + 1e-6
            assert 0 <= admission.in_flight(c) <= in_flight
            assert admission.in_flight(c) == sum(t.items for o, t in open_tickets if o == c)
        assert admission.total_in_flight == sum(t.items for _, t in open_tickets) <= total


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(min_value=1, max_value=1000),
    second=st.integers(min_value=1, max_value=1000),
    rate=st.floats(min_value=0.01, max_value=1e5),
    start=st.floats(min_value=T0, max_value=T0 + 1e6),
)
def test_a_retry_after_the_rate_refusal_delay_is_admitted(
    first: int, second: int, rate: float, start: float
) -> None:
    admission = Admission(10_000)
    grant = _grant(rate=rate, burst=1000, in_flight=2000)
    _ticket(admission.admit(grant, first, start)).release()
    result = admission.admit(grant, second, start)
    if isinstance(result, Refusal):
        assert result.reason == "rate" and result.retry_after > 0
        _ticket(admission.admit(grant, second, start + result.retry_after))


# RetryInfo through a real grpc.aio server and client.


def test_retry_info_reaches_a_grpc_client() -> None:
    refusal = Refusal("rate", 1.25, "rate quota of 100 items/s exceeded: retry in 1.250 s")

    async def refuse(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            refusal.message,
            trailing_metadata=retry_info_trailer(refusal),
        )
        raise AssertionError("abort returned")

    async def run() -> grpc.aio.AioRpcError:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "test.Quota", {"Sign": grpc.unary_unary_rpc_method_handler(refuse)}
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await channel.unary_unary("/test.Quota/Sign")(b"")
                return caught.value
        finally:
            await server.stop(None)

    error = asyncio.run(run())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == refusal.message
    status = rpc_status.from_call(error)
    assert status is not None
    retry = error_details_pb2.RetryInfo()
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(retry) and status.details[1].Unpack(info)
    assert retry.retry_delay.ToNanoseconds() == 1_250_000_000
    assert info.reason == "rate" and info.domain == "hcert-signer"


# The fair queue.


def test_a_flood_does_not_starve_a_small_client() -> None:
    queue: FairQueue[str] = FairQueue()
    for n in range(100):
        queue.put("A", f"A{n}")
    queue.put("B", "B0")
    queue.put("B", "B1")
    first_four = [queue.pop() for _ in range(4)]
    assert first_four == ["A0", "B0", "A1", "B1"]
    assert len(queue) == 98
    assert [queue.pop() for _ in range(98)] == [f"A{n}" for n in range(2, 100)]
    assert queue.pop() is None and len(queue) == 0


def test_a_client_arriving_later_waits_one_round_at_most() -> None:
    queue: FairQueue[str] = FairQueue()
    for client in "ABC":
        for n in range(10):
            queue.put(client, f"{client}{n}")
    assert [queue.pop() for _ in range(3)] == ["A0", "B0", "C0"]
    queue.put("D", "D0")
    assert [queue.pop() for _ in range(4)] == ["A1", "B1", "C1", "D0"]


def test_remove_client_items_takes_out_a_cancelled_call() -> None:
    queue: FairQueue[tuple[int, int]] = FairQueue()  # (call, chunk)
    for chunk in range(3):
        queue.put("A", (1, chunk))
        queue.put("A", (2, chunk))
    queue.put("B", (3, 0))
    assert queue.remove_client_items("A", lambda item: item[0] == 1) == [(1, 0), (1, 1), (1, 2)]
    assert len(queue) == 4
    assert queue.remove_client_items("A", lambda item: item[0] == 2) == [(2, 0), (2, 1), (2, 2)]
    assert queue.remove_client_items("nobody", lambda item: True) == []
    assert queue.remove_client_items("B", lambda item: False) == []
    assert [queue.pop(), queue.pop()] == [(3, 0), None]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCD"), st.booleans()), max_size=200))
def test_fair_queue_keeps_each_clients_order_and_loses_nothing(
    ops: list[tuple[str, bool]],
) -> None:
    queue: FairQueue[tuple[str, int]] = FairQueue()
    put: list[tuple[str, int]] = []
    popped: list[tuple[str, int]] = []
    for n, (client, pop_too) in enumerate(ops):
        queue.put(client, (client, n))
        put.append((client, n))
        if pop_too:
            item = queue.pop()
            assert item is not None
            popped.append(item)
        assert len(queue) == len(put) - len(popped)
    while (item := queue.pop()) is not None:
        popped.append(item)
    assert sorted(popped) == sorted(put)
    for client in "ABCD":
        assert [i for i in popped if i[0] == client] == [i for i in put if i[0] == client]
