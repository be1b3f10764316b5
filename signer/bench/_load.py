"""Phase (b)'s load generator: a separate process sending pre-serialised SignBatch requests.

Requests are built and serialised before the clock starts and responses are only counted, so
the generator spends its CPU on gRPC, not on building payloads.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import grpc

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payload

SIGN_BATCH = "/hcert.signer.v1.Signer/SignBatch"
_DISTINCT_BATCHES = 16


def build_requests(batch: int, alg: pb.Algorithm.ValueType, seed: int = 2022) -> list[bytes]:
    rng = random.Random(seed)
    blobs = []
    for b in range(_DISTINCT_BATCHES):
        items = [
            pb.SignItem(
                id=f"{b}-{i}",
                payload_json=json.dumps(vaccination_payload(rng), ensure_ascii=False),
            )
            for i in range(batch)
        ]
        blobs.append(pb.SignBatchRequest(items=items, alg=alg).SerializeToString())
    return blobs


def percentiles(latencies: list[float]) -> dict[str, float]:
    """p50, p90, p99, p99.9 and max of latencies in seconds, in milliseconds (empty input: all
    0)."""
    if not latencies:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0}
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999), "max": at(1.0)}


#: Batches of up to 64 MB either way, and one connection per channel.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.use_local_subchannel_pool", 1),
]

#: A client's TLS material for the bench's mutual-TLS runs: PEM bytes of the CA, the client's
#: certificate and its key (None: plaintext).
ClientPems = tuple[bytes, bytes, bytes]


def open_channel(address: str, tls: ClientPems | None, options: list[Any]) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    ca, cert, key = tls
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    return grpc.aio.secure_channel(address, credentials, options=options)


async def _drive(
    address: str,
    blobs: list[bytes],
    requests: int,
    concurrency: int,
    done: Any = None,
    connections: int | None = None,
    tls: ClientPems | None = None,
) -> dict[str, Any]:
    """``concurrency`` requests in flight over ``connections`` client connections (default: one
    each); request ``n`` in flight uses connection ``n % connections``."""
    count = min(concurrency, connections or concurrency)
    channels = [open_channel(address, tls, CHANNEL_OPTIONS) for _ in range(count)]
    calls = [channels[lane % count].unary_unary(SIGN_BATCH) for lane in range(concurrency)]
    for ch in channels:
        await ch.channel_ready()
    latencies: list[float] = []
    signed = rejected = 0
    next_request = 0

    async def lane(call: Any) -> None:
        nonlocal next_request, signed, rejected
        while next_request < requests:
            blob = blobs[next_request % len(blobs)]
            next_request += 1
            sent = time.perf_counter()
            raw = await call(blob)
            latencies.append(time.perf_counter() - sent)
            response = pb.SignBatchResponse.FromString(raw)
            ok = sum(1 for r in response.results if r.HasField("signed"))
            signed += ok
            rejected += len(response.results) - ok
            if done is not None:
                done.value = signed + rejected  # read by the parent's progress line

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane(call) for call in calls))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for ch in channels:
        await ch.close()
    return {
        "seconds": elapsed,
        "client_cpu_seconds": cpu,
        "signed": signed,
        "rejected": rejected,
        "latency_ms": percentiles(latencies),
    }


async def _stream(
    address: str, blobs: list[bytes], requests: int, done: Any = None
) -> dict[str, Any]:
    """One SignStream of ``requests`` batches: the long-run case whose server RSS must stay flat."""
    options = [("grpc.max_receive_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        call = channel.stream_stream("/hcert.signer.v1.Signer/SignStream")

        async def requests_iter() -> Any:
            for n in range(requests):
                yield blobs[n % len(blobs)]

        signed = rejected = 0
        started = time.perf_counter()
        async for raw in call(requests_iter()):
            response = pb.SignBatchResponse.FromString(raw)
            ok = sum(1 for r in response.results if r.HasField("signed"))
            signed += ok
            rejected += len(response.results) - ok
            if done is not None:
                done.value = signed + rejected
        return {"seconds": time.perf_counter() - started, "signed": signed, "rejected": rejected}


def run_stream(address: str, blobs: list[bytes], requests: int, out: Any, done: Any = None) -> None:
    """Process entry point for the long-stream phase; ``done``: a shared counter of the items
    answered so far (``multiprocessing.Value``), for the parent's progress line."""
    out.put(asyncio.run(_stream(address, blobs, requests, done)))


def run_load(
    address: str,
    blobs: list[bytes],
    requests: int,
    concurrency: int,
    out: Any,
    done: Any = None,
    connections: int | None = None,
    tls: ClientPems | None = None,
) -> None:
    """Process entry point: drive the server, put the figures on ``out``; ``done`` as for
    :func:`run_stream`; ``connections`` and ``tls`` as for :func:`_drive`."""
    out.put(asyncio.run(_drive(address, blobs, requests, concurrency, done, connections, tls)))
