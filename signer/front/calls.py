"""Every RPC the front answers, counted, timed and logged once (issue 11 §1, §2).

One gRPC server interceptor wraps every method: the Signer's, health and reflection alike, so
refusals (PERMISSION_DENIED, RESOURCE_EXHAUSTED, INVALID_ARGUMENT …) and health probes appear
in ``grpc_server_started_total``, ``grpc_server_handled_total`` and
``grpc_server_handling_seconds`` (the names and labels of go-grpc-prometheus and
py-grpc-prometheus; the histogram carries ``grpc_code`` too, so refusals, answered in
microseconds, do not hide in the latency of signed batches), and in one log line per RPC.

The handlers fill in what only they know (items) on the :class:`Call` of the running RPC
(:func:`current`): a context variable, so batches a stream runs as tasks see the same one.
Per RPC, never per item.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from signer import metrics

__all__ = ["REQUEST_ID_HEADER", "Call", "CallObserver", "current", "request_id"]

log = logging.getLogger("signer.rpc")

REQUEST_ID_HEADER = "x-request-id"
#: A caller's request id is taken as sent when it looks like one (a UUID, a trace id);
#: anything else is replaced by a fresh one, so a log line never carries arbitrary text.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
#: Client identities in log lines: printable, at most this long.
_MAX_IDENTITY = 128
_UNKNOWN = ("unknown", "unknown")


@dataclass(slots=True)
class Call:
    """The RPC being answered: what its log line and metrics say about it."""

    request_id: str
    client: str  # the identity the policy judges (TLS name, ``local`` on loopback)
    items: int = 0


_CURRENT: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


def current() -> Call | None:
    """The :class:`Call` of the RPC this code runs for (None outside an RPC)."""
    return _CURRENT.get()


def request_id(metadata: Any) -> str:
    """The caller's ``x-request-id`` when it is a plausible id, else a new random one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER:
            text = value if isinstance(value, str) else ""
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return os.urandom(8).hex()


def _printable(text: str) -> str:
    text = text[:_MAX_IDENTITY]
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def _kind(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming:
        return "BIDI_STREAM" if handler.response_streaming else "CLIENT_STREAM"
    return "SERVER_STREAM" if handler.response_streaming else "UNARY"


class CallObserver(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts, times and logs every RPC; ``identify`` names the client of a call (its TLS
    identity, ``local`` on loopback)."""

    def __init__(self, identify: Callable[[grpc.aio.ServicerContext], str]) -> None:
        self._identify = identify

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            # No such method: gRPC answers UNIMPLEMENTED. The path is the caller's text, so it
            # never becomes a label (bounded: only registered methods are named).
            metrics.GRPC_HANDLED.labels("UNARY", *_UNKNOWN, "UNIMPLEMENTED").inc()
            return handler
        service, _, method = handler_call_details.method.lstrip("/").partition("/")
        labels = (_kind(handler), service, method)
        behaviour: Any = (
            handler.unary_unary or handler.unary_stream or handler.stream_unary
        ) or handler.stream_stream
        if inspect.isasyncgenfunction(behaviour):
            wrapped: Any = self._stream(behaviour, labels)
        elif inspect.iscoroutinefunction(behaviour):
            wrapped = self._unary(behaviour, labels)
        else:
            return handler  # a synchronous handler (none registered here)
        factory = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(handler.request_streaming, handler.response_streaming)]
        built: grpc.RpcMethodHandler = factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        return built

    def _unary(
        self, behaviour: Callable[..., Awaitable[Any]], labels: tuple[str, str, str]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call, token, started = self._begin(context, labels)
            code = "UNKNOWN"
            try:
                result = await behaviour(request, context)
                code = _code(context, "OK")
                return result
            except BaseException as e:
                code = _failed(context, e)
                raise
            finally:
                _CURRENT.reset(token)
                _end(call, labels, code, started)

        return observed

    def _stream(
        self, behaviour: Callable[..., AsyncIterator[Any]], labels: tuple[str, str, str]
    ) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
        async def observed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            call, token, started = self._begin(context, labels)
            code = "UNKNOWN"
            try:
                async for response in behaviour(request, context):
                    yield response
                code = _code(context, "OK")
            except BaseException as e:
                code = _failed(context, e)
                raise
            finally:
                _CURRENT.reset(token)
                _end(call, labels, code, started)

        return observed

    def _begin(
        self, context: grpc.aio.ServicerContext, labels: tuple[str, str, str]
    ) -> tuple[Call, contextvars.Token[Call | None], float]:
        started = time.perf_counter()
        metrics.GRPC_STARTED.labels(*labels).inc()
        call = Call(request_id(context.invocation_metadata()), self._identify(context))
        context.set_trailing_metadata(((REQUEST_ID_HEADER, call.request_id),))
        return call, _CURRENT.set(call), started


def _code(context: grpc.aio.ServicerContext, default: str) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else default


def _failed(context: grpc.aio.ServicerContext, error: BaseException) -> str:
    """The status an RPC that raised ends with: the one it aborted with, CANCELLED when the
    caller went away, UNKNOWN for an exception gRPC turns into one."""
    if isinstance(error, grpc.aio.AbortError):
        return _code(context, "UNKNOWN")
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    return _code(context, "UNKNOWN")


def _end(call: Call, labels: tuple[str, str, str], code: str, started: float) -> None:
    seconds = time.perf_counter() - started
    metrics.GRPC_HANDLED.labels(*labels, code).inc()
    metrics.GRPC_SECONDS.labels(*labels, code).observe(seconds)
    _, service, method = labels
    client = _printable(call.client)
    log.info(
        "%s %s in %.3f s, %d item(s), client %s, request %s",
        method,
        code,
        seconds,
        call.items,
        client,
        call.request_id,
        extra={
            "request_id": call.request_id,
            "client": client,
            "service": service,
            "method": method,
            "code": code,
            "items": call.items,
            "duration_seconds": round(seconds, 6),
        },
    )
