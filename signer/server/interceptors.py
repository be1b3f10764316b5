"""One place that turns exceptions into gRPC status codes (STYLE.md "Errors").

request → INVALID_ARGUMENT, key state → FAILED_PRECONDITION, HSM → UNAVAILABLE, configuration →
INTERNAL with its message logged, anything unexpected → INTERNAL with a fixed message, logged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from signer.errors import BackendError, KeyStateError, RequestError, SignerError

log = logging.getLogger(__name__)

_CODES: tuple[tuple[type[SignerError], grpc.StatusCode], ...] = (
    (RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (KeyStateError, grpc.StatusCode.FAILED_PRECONDITION),
    (BackendError, grpc.StatusCode.UNAVAILABLE),
)
INTERNAL_MESSAGE = "internal error; the appliance logged the details"


async def _abort(context: grpc.aio.ServicerContext, error: Exception) -> None:
    if isinstance(error, SignerError):
        for cls, code in _CODES:
            if isinstance(error, cls):
                log.info("%s: %s", code.name, error)
                await context.abort(code, str(error))
    log.exception("unexpected error in an RPC", exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def _wrap_unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except Exception as e:
            if _is_abort(e):
                raise
            await _abort(context, e)

    return handler


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for response in behavior(request, context):
                yield response
        except Exception as e:
            if _is_abort(e):
                raise
            await _abort(context, e)

    return handler


def _is_abort(error: Exception) -> bool:
    # context.abort() raises AbortError to end the RPC; it must pass through untouched.
    return isinstance(error, grpc.aio.AbortError)


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
