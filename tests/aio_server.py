"""A real ``grpc.aio`` server in its own thread and event loop, for TLS tests (issue 7 §2).

The front process is grpc.aio, so the TLS tests serve through grpc.aio too; the clients are the
CLI's own sync channels (``signer.client.channel``). Two methods: ``Whoami`` answers with the
caller's identity in every mode, ``Hold`` stays in flight until :meth:`AioTestServer.release`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from signer.config import IDENTITY_MODES
from signer.front.tls import client_identity

SERVICE = "test.Tls"
WHOAMI = f"/{SERVICE}/Whoami"
HOLD = f"/{SERVICE}/Hold"


class AioTestServer:
    def __init__(self, credentials: grpc.ServerCredentials | None) -> None:
        self._credentials = credentials
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._release: asyncio.Event | None = None
        self.held = threading.Event()  # set once a Hold call is in the handler
        self.calls = 0  # handler invocations: stays 0 when the handshake refuses a client
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def release(self) -> None:
        """Let the held call(s) finish."""
        assert self._release is not None
        self._loop.call_soon_threadsafe(self._release.set)

    async def _start(self) -> None:
        self._release = asyncio.Event()
        server = grpc.aio.server()
        handlers = {
            "Whoami": grpc.unary_unary_rpc_method_handler(self._whoami),
            "Hold": grpc.unary_unary_rpc_method_handler(self._hold),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        if self._credentials is None:
            self.port = server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = server.add_secure_port("127.0.0.1:0", self._credentials)
        await server.start()
        self._server = server

    async def _stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)

    async def _whoami(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        auth = context.auth_context()
        names = {mode: client_identity(auth, mode) for mode in IDENTITY_MODES}
        return json.dumps(names).encode()

    async def _hold(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        self.held.set()
        assert self._release is not None
        await self._release.wait()
        return b"done:" + request


@contextmanager
def aio_test_server(credentials: grpc.ServerCredentials | None) -> Iterator[AioTestServer]:
    server = AioTestServer(credentials)
    server.start()
    try:
        yield server
    finally:
        server.stop()
