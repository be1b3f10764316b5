"""Phase (d): what a one-item ``SignBatch`` costs the server, against a bare ``grpc.aio`` server
whose handler makes one hop to a single-thread executor (issue 7 §7: ≤ 2×), same machine, same
run. Server CPU is counted over every server process (front and workers)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

_BARE_METHOD = "/bench.Bare/Call"


def run_bare_server(out: Any) -> None:
    """Process entry point: a bare grpc.aio server on 127.0.0.1:0; puts its port on ``out``."""
    asyncio.run(_bare(out))


async def _bare(out: Any) -> None:
    hop = ThreadPoolExecutor(max_workers=1)
    reply = b"x" * 700

    async def call(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(hop, lambda: reply)

    def raw(data: bytes) -> bytes:
        return data

    handler = grpc.method_handlers_generic_handler(
        "bench.Bare",
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                call, request_deserializer=raw, response_serializer=raw
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out.put(port)
    await server.wait_for_termination()


def run_unary_load(address: str, method: str, blob: bytes, calls: int, out: Any) -> None:
    """Process entry point: ``calls`` unary calls, 8 in flight over one channel."""
    out.put(asyncio.run(_drive(address, method, blob, calls)))


async def _drive(address: str, method: str, blob: bytes, calls: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(method)
        await call(blob)
        left = calls

        async def lane() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await call(blob)

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(8)))
        return time.perf_counter() - started
