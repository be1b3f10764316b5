"""Phase (e) of ``signer bench --fairness N`` (issue 7 §4): does one client's flood starve another?

Client B (the bench's client certificate) sends N SignBatch calls one after the other, first
alone, then while client A (a second certificate: another identity for the fair queue and the
quotas) floods the appliance with phase (b)'s load, ``--concurrency`` batches of ``--batch``
items in flight. B's batches are of 1 item (one citizen at a clinic) and of 100 (an issuance
system). The figure is B's p99 latency flooded over alone (the issue's goal: ≤ 2×).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from signer.api.v1 import signer_pb2 as pb
from signer.bench._load import (
    CHANNEL_OPTIONS,
    SIGN_BATCH,
    ClientPems,
    build_requests,
    open_channel,
    percentiles,
)
from signer.errors import BackendError

#: B's batch sizes: one citizen at a clinic, and an issuance system's batch.
B_BATCHES = (1, 100)
_WARM_UP_CALLS = 20  # B's calls before those measured: channel, TLS session, caches
_REFUSED_PAUSE = 0.01  # A's pause after a refusal, so that a refusal loop does not spin


def run_paced(address: str, tls: ClientPems, blob: bytes, calls: int, out: Any) -> None:
    """Process entry point for client B: ``calls`` calls one after the other (after
    :data:`_WARM_UP_CALLS` of warm-up); puts their latencies in seconds on ``out``, or the
    status of a failed call as text (B's calls are never refused by a working appliance:
    nothing else is measured)."""
    try:
        out.put(asyncio.run(_paced(address, tls, blob, calls)))
    except grpc.aio.AioRpcError as e:
        out.put(f"{e.code().name}: {e.details()}")


async def _paced(address: str, tls: ClientPems, blob: bytes, calls: int) -> list[float]:
    async with open_channel(address, tls, CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(SIGN_BATCH)
        latencies = []
        for n in range(_WARM_UP_CALLS + calls):
            sent = time.perf_counter()
            await call(blob, timeout=60)
            if n >= _WARM_UP_CALLS:
                latencies.append(time.perf_counter() - sent)
    return latencies


def run_flood(
    address: str, tls: ClientPems, blobs: list[bytes], concurrency: int, stop: Any, out: Any
) -> None:
    """Process entry point for client A: ``concurrency`` batches in flight until ``stop`` is
    set; puts (calls answered, calls refused, seconds) on ``out``."""
    out.put(asyncio.run(_flood(address, tls, blobs, concurrency, stop)))


async def _flood(
    address: str, tls: ClientPems, blobs: list[bytes], concurrency: int, stop: Any
) -> tuple[int, int, float]:
    async with open_channel(address, tls, CHANNEL_OPTIONS) as channel:
        call = channel.unary_unary(SIGN_BATCH)
        answered = refused = 0
        started = time.perf_counter()

        async def lane(first: int) -> None:
            nonlocal answered, refused
            n = first
            while not stop.is_set():
                try:
                    await call(blobs[n % len(blobs)], timeout=60)
                    answered += 1
                except grpc.aio.AioRpcError:
                    refused += 1
                    await asyncio.sleep(_REFUSED_PAUSE)
                n += 1

        await asyncio.gather(*(lane(n) for n in range(concurrency)))
        return answered, refused, time.perf_counter() - started


def measure_fairness(
    ctx: Any,
    address: str,
    tls: tuple[ClientPems, ClientPems],
    flood: tuple[list[bytes], int],
    calls: int,
    alg: pb.Algorithm.ValueType,
) -> dict[str, Any]:
    """B's latency alone and flooded, for each of :data:`B_BATCHES`; ``tls`` is (B's, A's)
    client material, ``flood`` A's request blobs and requests in flight."""
    b_tls, a_tls = tls
    b_blobs = {size: build_requests(size, alg, seed=7)[0] for size in B_BATCHES}
    out = ctx.Queue()

    def b_latencies(size: int) -> dict[str, float]:
        process = ctx.Process(target=run_paced, args=(address, b_tls, b_blobs[size], calls, out))
        process.start()
        latencies: list[float] | str = out.get(timeout=600)
        process.join()
        if isinstance(latencies, str):
            raise BackendError(f"client B's call failed in the fairness phase: {latencies}")
        return percentiles(latencies)

    alone = {size: b_latencies(size) for size in B_BATCHES}
    stop = ctx.Event()
    flood_out = ctx.Queue()
    a = ctx.Process(target=run_flood, args=(address, a_tls, flood[0], flood[1], stop, flood_out))
    a.start()
    try:
        time.sleep(2.0)  # A's batches fill the queue first
        flooded = {size: b_latencies(size) for size in B_BATCHES}
    finally:
        stop.set()
        answered, refused, seconds = flood_out.get(timeout=600)
        a.join()
    return {
        "calls": calls,
        "flood_calls_answered": answered,
        "flood_calls_refused": refused,
        "flood_seconds": round(seconds, 1),
        "b": [
            {
                "batch": size,
                "alone_p50_ms": alone[size]["p50"],
                "alone_p99_ms": alone[size]["p99"],
                "flooded_p50_ms": flooded[size]["p50"],
                "flooded_p99_ms": flooded[size]["p99"],
                "p99_ratio": round(flooded[size]["p99"] / alone[size]["p99"], 2),
            }
            for size in B_BATCHES
        ],
    }
