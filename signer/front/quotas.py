"""Quotas and admission (issue 7 §4): per-client token bucket, items per UTC day, in-flight items.

The front calls :meth:`Admission.admit` for every batch (or stream message) before any HSM work;
a :class:`Refusal` becomes RESOURCE_EXHAUSTED with a ``google.rpc.RetryInfo``
(:func:`retry_info_trailer`), so overload is answered at once instead of queued. Everything here
runs on the front's single event-loop thread: no locks, O(1) per call, and every function takes
the time as ``now`` (seconds since the epoch, ``time.time()``) so tests need no real clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from signer.config import Config
from signer.front.policy import Grant

__all__ = [
    "IN_FLIGHT_RETRY_SECONDS",
    "Admission",
    "FairQueue",
    "Refusal",
    "Ticket",
    "retry_info_trailer",
]

#: The retry_after of an in-flight refusal: in-flight items are released as chunks finish
#: (a chunk of a few hundred items takes tens of milliseconds), so a short pause is enough and
#: a longer one would leave the workers idle once the backlog clears.
IN_FLIGHT_RETRY_SECONDS = 0.1

T = TypeVar("T")

_DAY = 86400.0
_ERROR_DOMAIN = "hcert-signer"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a batch was not admitted, and when trying again may succeed.

    ``reason``: ``rate`` (token bucket empty), ``daily`` (items per UTC day used up),
    ``client_in_flight``, ``total_in_flight`` or ``over_burst`` (the batch is larger than this
    client can ever be admitted with: ``retry_after`` 0, send smaller batches).
    ``message`` is for a person and is the status message the client sees.
    """

    reason: str
    retry_after: float
    message: str


class _ClientState:
    """The mutable quota state of one client identity."""

    __slots__ = ("day", "day_items", "in_flight", "stamp", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens  # a new client starts with a full bucket
        self.stamp = now  # when ``tokens`` was last brought up to date
        self.day = _utc_day(now)
        self.day_items = 0
        self.in_flight = 0


class Ticket:
    """Admitted items, counted in flight until :meth:`release`."""

    __slots__ = ("_admission", "_client", "_released", "items")

    def __init__(self, admission: Admission, client: _ClientState, items: int) -> None:
        self._admission = admission
        self._client = client
        self._released = False
        self.items = items

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Return the in-flight items; a second call does nothing (idempotent, so a handler can
        release in a ``finally`` whatever happened before).

        The token bucket and the day count are *not* refunded: they meter what a client asked
        for, and a client whose batch failed or was cancelled must not be able to retry at a
        rate above its quota (a cancelled flood would otherwise cost it nothing).
        """
        if self._released:
            return
        self._released = True
        self._client.in_flight -= self.items
        self._admission._total_in_flight -= self.items


class Admission:
    """Per-client quotas and the appliance-wide in-flight limit.

    Each client identity has its own state, made on its first batch; the limits come from the
    :class:`Grant` of each call, so a changed policy applies at once (a smaller burst clips the
    bucket). State is kept for every identity seen: identities come from certificates the
    client CA issued, and the day counts must survive between batches.
    """

    __slots__ = ("_clients", "_total_in_flight", "total_limit")

    def __init__(self, total_in_flight_items: int) -> None:
        self.total_limit = total_in_flight_items
        self._total_in_flight = 0
        self._clients: dict[str, _ClientState] = {}

    @classmethod
    def from_config(cls, config: Config) -> Admission:
        return cls(config.quotas.total_in_flight_items)

    @property
    def total_in_flight(self) -> int:
        return self._total_in_flight

    def in_flight(self, identity: str) -> int:
        """Items of this client admitted and not yet released."""
        state = self._clients.get(identity)
        return 0 if state is None else state.in_flight

    def full(self, grant: Grant) -> Refusal | None:
        """The in-flight refusal any batch of ``grant``'s client would get now, or None: asked
        before the request is even parsed, so that in a flood a refusal costs next to nothing
        (issue 9 §7: the event loop must keep answering within milliseconds)."""
        state = self._clients.get(grant.identity)
        if state is not None and state.in_flight >= grant.limits.max_in_flight_items:
            return self._client_in_flight(state, grant)
        if self._total_in_flight >= self.total_limit:
            return _TOTAL_IN_FLIGHT
        return None

    def admit(self, grant: Grant, items: int, now: float) -> Ticket | Refusal:
        """Admit ``items`` items of ``grant``'s client at time ``now``, or say why not.

        Nothing is counted unless every check passes. When several limits are hit the one
        reported is the one that lasts longest (daily, then rate, then in flight), so that
        ``retry_after`` is never too early for all of them.
        """
        if items < 1:
            raise ValueError(f"admit needs at least one item, got {items}")
        limits = grant.limits
        ceiling = min(limits.burst, limits.max_in_flight_items, self.total_limit)
        if limits.items_per_day:
            ceiling = min(ceiling, limits.items_per_day)
        if items > ceiling:
            return Refusal(
                "over_burst",
                0.0,
                f"a batch of {items} items can never be admitted for this client (at most "
                f"{ceiling} at once): send smaller batches",
            )
        state = self._clients.get(grant.identity)
        if state is None:
            state = self._clients[grant.identity] = _ClientState(float(limits.burst), now)
        if now > state.stamp:  # a clock step backwards refills nothing
            state.tokens += (now - state.stamp) * limits.items_per_second
            state.stamp = now
        state.tokens = min(state.tokens, float(limits.burst))
        day = _utc_day(now)
        if day != state.day:
            state.day, state.day_items = day, 0

        if limits.items_per_day and state.day_items + items > limits.items_per_day:
            return Refusal(
                "daily",
                (day + 1) * _DAY - now,
                f"daily quota of {limits.items_per_day} items used up "
                f"({state.day_items} today): try again after 00:00 UTC",
            )
        if state.tokens < items:
            # rounded up past the float resolution of epoch seconds (~0.24 µs), so that a
            # retry exactly after ``retry_after`` finds enough tokens
            wait = math.ceil((items - state.tokens) / limits.items_per_second * 1e6) / 1e6 + 1e-6
            return Refusal(
                "rate",
                wait,
                f"rate quota of {limits.items_per_second:g} items/s exceeded: "
                f"retry in {wait:.3f} s",
            )
        if state.in_flight + items > limits.max_in_flight_items:
            return self._client_in_flight(state, grant)
        if self._total_in_flight + items > self.total_limit:
            return _TOTAL_IN_FLIGHT
        state.tokens -= items
        state.day_items += items
        state.in_flight += items
        self._total_in_flight += items
        return Ticket(self, state, items)

    @staticmethod
    def _client_in_flight(state: _ClientState, grant: Grant) -> Refusal:
        return Refusal(
            "client_in_flight",
            IN_FLIGHT_RETRY_SECONDS,
            f"this client already has {state.in_flight} items in flight (at most "
            f"{grant.limits.max_in_flight_items}): retry when some are done",
        )


_TOTAL_IN_FLIGHT = Refusal(
    "total_in_flight",
    IN_FLIGHT_RETRY_SECONDS,
    "the appliance is at its in-flight limit: retry shortly",
)


def _utc_day(now: float) -> int:
    """Days since the epoch: POSIX time has no leap seconds, so a UTC day is 86400 s."""
    return math.floor(now / _DAY)


def retry_info_trailer(refusal: Refusal) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying a ``google.rpc.Status`` (RESOURCE_EXHAUSTED, the refusal's
    message) with ``google.rpc.RetryInfo`` (the delay) and ``google.rpc.ErrorInfo`` (the reason,
    domain ``hcert-signer``), under ``grpc-status-details-bin``.

    Use it with the same message, or clients' ``rpc_status.from_call`` refuses the details::

        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message,
                            trailing_metadata=retry_info_trailer(refusal))
    """
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(round(refusal.retry_after * 1e9))
    retry = any_pb2.Any()
    retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=refusal.reason, domain=_ERROR_DOMAIN))
    status = status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED, message=refusal.message, details=[retry, info]
    )
    return tuple(rpc_status.to_status(status).trailing_metadata)


class FairQueue(Generic[T]):
    """Per-client FIFO queues served round-robin, for the dispatcher's chunks.

    One client's flood of chunks cannot starve another: each :meth:`pop` takes the oldest item
    of the next client in turn, so a client with one chunk waiting gets it within one round of
    the clients that have work queued, however many chunks the others have. Chunks are of about
    equal size (the dispatcher cuts batches into chunks), so turns per chunk are turns per item
    within a chunk's size. ``put``, ``pop`` and ``len`` are O(1).
    """

    __slots__ = ("_count", "_queues", "_turns")

    def __init__(self) -> None:
        self._queues: dict[str, deque[T]] = {}
        self._turns: deque[str] = deque()  # clients with items, in serving order
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def put(self, client: str, item: T) -> None:
        """Queue ``item`` behind ``client``'s earlier items; a client new to the queue takes
        its turn after every client already waiting."""
        queue = self._queues.get(client)
        if queue is None:
            queue = self._queues[client] = deque()
            self._turns.append(client)
        queue.append(item)
        self._count += 1

    def pop(self) -> T | None:
        """The oldest item of the client whose turn it is, or None when the queue is empty."""
        if not self._turns:
            return None
        client = self._turns.popleft()
        queue = self._queues[client]
        item = queue.popleft()
        if queue:
            self._turns.append(client)
        else:
            del self._queues[client]
        self._count -= 1
        return item

    def remove_client_items(self, client: str, predicate: Callable[[T], bool]) -> list[T]:
        """Take out ``client``'s items for which ``predicate`` holds (e.g. the chunks of a
        cancelled call) and return them in order; O(that client's items), plus O(clients)
        when its queue empties."""
        queue = self._queues.get(client)
        if queue is None:
            return []
        removed = [item for item in queue if predicate(item)]
        if not removed:
            return []
        kept = deque(item for item in queue if not predicate(item))
        self._count -= len(removed)
        if kept:
            self._queues[client] = kept
        else:
            del self._queues[client]
            self._turns.remove(client)
        return removed
