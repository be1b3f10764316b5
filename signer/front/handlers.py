"""The front's RPC handlers: identity → policy → admission → split into chunks → workers → join.

Requests arrive as raw bytes and are parsed only after the client's permission is checked, so a
forbidden call costs no parsing (issue 7 §3). Responses leave as bytes: a chunk's serialised
``results`` are concatenated in request order (protobuf concatenation of repeated fields), so the
front never rebuilds a response item by item. Every error path ends in one status code:
PERMISSION_DENIED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED (with RetryInfo), FAILED_PRECONDITION,
UNAVAILABLE (retryable), DEADLINE_EXCEEDED, or INTERNAL with a fixed message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from signer import metrics
from signer.config import Config
from signer.front import calls, checks
from signer.front.chunks import (
    RecentClients,
    chunk_size,
    ledger_entries,
    refuse_repeated_uvcis,
    rejected,
    split,
)
from signer.front.policy import Grant, Policy
from signer.front.pool import Chunk, ChunkError, ChunkResult, WorkerPool
from signer.front.qr import QrRenderer
from signer.front.quotas import (
    IN_FLIGHT_RETRY_SECONDS,
    Admission,
    Refusal,
    retry_info_trailer,
)
from signer.front.tls import LOCAL_IDENTITY, client_identity
from signer.ledger.store import LedgerError
from signer.ledger.writer import LedgerWriter
from signer.logs import RateLimitedLog, error_kind

log = logging.getLogger(__name__)
#: Whatever a request can trigger is logged at most once per kind a minute (issue 9 §8).
limited_log = RateLimitedLog(log)

SERVICE = "hcert.signer.v1.Signer"
INTERNAL_MESSAGE = "internal error; the appliance logged the details"
#: A batch whose chunks come back with less than this left before the caller's deadline is not
#: recorded nor answered (DEADLINE_EXCEEDED): the ledger commit and the answer would most likely
#: arrive after the caller gave up, leaving a record of certificates nobody received.
GONE_MARGIN = 0.1
#: The share of a caller's remaining time the work queued ahead of its batch, and the batch, may
#: be expected to take. Not all of it: the estimate is a moving average, and other clients'
#: chunks that arrive later are served in turn with this one (FairQueue), so a batch admitted
#: to finish just before its deadline would often miss it and be signed for nobody.
DEADLINE_SHARE = 0.5
OPERATOR_HEADER, MAX_OPERATOR = "x-operator-id", 128

#: Item errors the front itself gives (beside those of the workers' validation and service).
LEDGER_ERROR_CODES: dict[str, str] = {
    "hc1_not_issued_here": "Reissue: the issuance ledger has no record of this certificate; only "
    "certificates this appliance issued can be re-issued.",
    "hc1_revoked": "Reissue: an officer revoked this certificate (by its SIGNATURE hash) or its "
    "UVCI (UCI / COUNTRYCODEUCI hash); a revoked certificate is never re-issued.",
}
NOT_ISSUED_HERE = (
    "hc1_not_issued_here",
    "",
    "the issuance ledger has no record of this certificate: only certificates this appliance "
    "issued can be re-issued",
)
REVOKED = (
    "hc1_revoked",
    "",
    "this certificate or its UVCI is revoked (signer audit revocations lists why): a revoked "
    "certificate is never re-issued",
)

_CODES = {
    "request": grpc.StatusCode.INVALID_ARGUMENT,
    "key_state": grpc.StatusCode.FAILED_PRECONDITION,
    "backend": grpc.StatusCode.UNAVAILABLE,
    "gone": grpc.StatusCode.DEADLINE_EXCEEDED,
}


class _Abort(Exception):  # noqa: N818 - control flow: the status an RPC ends with
    def __init__(
        self, code: grpc.StatusCode, message: str, trailer: tuple[tuple[str, bytes], ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.trailer = trailer


class Front:
    """The handlers of ``hcert.signer.v1.Signer``; one instance per front process."""

    def __init__(self, config: Config, pool: WorkerPool, ledger: LedgerWriter) -> None:
        self._pool = pool
        self._ledger = ledger
        self._policy = Policy.from_config(config)
        self._admission = Admission.from_config(config)
        self._tls = config.tls.enabled
        self._identity_mode = config.tls.identity
        self._max_batch = config.server.max_batch
        self._window = config.server.stream_window
        self._qr = QrRenderer(max(1, pool.size // 2))
        self._recent = RecentClients()  # which clients share the appliance now
        self.draining = asyncio.Event()

    def close(self) -> None:
        self._qr.close()

    def observer(self) -> calls.CallObserver:
        """The interceptor that counts, times and logs every RPC of the server."""
        return calls.CallObserver(self._identity)

    def handler(self) -> grpc.GenericRpcHandler:
        def raw(request: bytes) -> bytes:
            return request

        unary = {
            name: grpc.unary_unary_rpc_method_handler(
                self._unary(name), request_deserializer=raw, response_serializer=raw
            )
            for name in ("SignBatch", "Reissue", "Verify", "SignHash", "GetTrustList")
        }
        stream = grpc.stream_stream_rpc_method_handler(
            self._sign_stream, request_deserializer=raw, response_serializer=raw
        )
        return grpc.method_handlers_generic_handler(SERVICE, {**unary, "SignStream": stream})

    # -- calls -----------------------------------------------------------------------------------

    def _unary(self, rpc: str) -> Callable[[bytes, grpc.aio.ServicerContext], Any]:
        async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
            started = time.perf_counter()
            try:
                grant = self._admit_call(rpc, context)
                if rpc != "GetTrustList":
                    self._refuse_when_full(grant, context)
                request = _parse(rpc, raw, grant)
                if rpc == "GetTrustList":
                    return self._trust_list()
                return await self._batch(rpc, raw, request, grant, context)
            except _Abort as e:
                if e.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                    metrics.REFUSAL_SECONDS.observe(time.perf_counter() - started)
                await _end(context, e)
                raise AssertionError("unreachable") from None  # context.abort raised
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as e:
                limited_log.error(error_kind(rpc, e), "unexpected error in %s", rpc, exc_info=True)
                await _end(context, _Abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE))
                raise AssertionError("unreachable") from None
            finally:
                metrics.BATCHES.labels(rpc).inc()
                metrics.BATCH_SECONDS.labels(rpc).observe(time.perf_counter() - started)

        return handle

    async def _sign_stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """At most ``stream_window`` batches of a stream in flight; the next request is read only
        when one is done, so memory stays flat however long the stream. On drain the stream stops
        reading, answers what it took, and ends with UNAVAILABLE saying how far it got."""
        pending: list[asyncio.Future[bytes]] = []
        answered = received = 0
        try:
            grant = self._admit_call("SignStream", context)
            iterator = aiter(requests)
            drained = asyncio.ensure_future(self.draining.wait())
            try:
                while True:
                    following = asyncio.ensure_future(anext(iterator))
                    await asyncio.wait({following, drained}, return_when=asyncio.FIRST_COMPLETED)
                    if not following.done():
                        following.cancel()
                        break
                    try:
                        raw = following.result()
                    except StopAsyncIteration:
                        break
                    received += 1
                    try:
                        request = _parse("SignStream", raw, grant)
                    except _Abort as e:
                        # Batches before it are answered first, in order; then the status says
                        # which message was bad.
                        while pending:
                            yield await pending.pop(0)
                            answered += 1
                        raise _Abort(
                            e.code,
                            f"message {received} of this stream: {e}; the {answered} batch(es) "
                            "before it were answered",
                        ) from None
                    pending.append(
                        asyncio.ensure_future(
                            self._batch("SignStream", raw, request, grant, context)
                        )
                    )
                    if len(pending) >= self._window:
                        yield await pending.pop(0)
                        answered += 1
                while pending:
                    yield await pending.pop(0)
                    answered += 1
            finally:
                drained.cancel()
            if self.draining.is_set():
                raise _Abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the appliance is shutting down; {answered} batch(es) of this stream were "
                    "answered: send the rest again",
                )
        except _Abort as e:
            await _end(context, e)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as e:
            limited_log.error(
                error_kind("SignStream", e), "unexpected error in SignStream", exc_info=True
            )
            await _end(context, _Abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE))
        finally:
            for future in pending:
                future.cancel()

    def _admit_call(self, rpc: str, context: grpc.aio.ServicerContext) -> Grant:
        """Who is calling, and may they call this at all (before any parsing)."""
        call = calls.current()
        grant = self._policy.grant(call.client if call else self._identity(context))
        if not grant.allows(rpc):
            _refused(grant, "permission")
            raise _Abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"client {grant.identity!r} may not call {rpc} ([policy])",
            )
        if self.draining.is_set():
            _refused(grant, "draining")
            raise _Abort(grpc.StatusCode.UNAVAILABLE, "the appliance is shutting down")
        return grant

    def _refuse_when_full(self, grant: Grant, context: grpc.aio.ServicerContext) -> None:
        """RESOURCE_EXHAUSTED before parsing when no batch of this client could be admitted:
        no room in flight, or the work queued already takes longer than the caller will wait."""
        refusal = self._admission.full(grant) or self._too_late(0, context)
        if refusal is not None:
            _refused(grant, refusal.reason)
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message, retry_info_trailer(refusal)
            )

    def _too_late(self, items: int, context: grpc.aio.ServicerContext) -> Refusal | None:
        """Refuse at once what would come back after the caller's deadline: signed for nobody,
        it would only delay the batches behind it past theirs (issue 9 §7)."""
        remaining = context.time_remaining()
        expected = self._pool.expected_seconds(items)
        if remaining is None or expected is None or expected <= remaining * DEADLINE_SHARE:
            return None
        return Refusal(
            "deadline",
            max(IN_FLIGHT_RETRY_SECONDS, expected - remaining),
            f"the appliance would answer this batch in about {expected:.1f} s (the work queued "
            f"ahead of it), after its deadline in {max(0.0, remaining):.1f} s: retry later, or "
            "with a longer deadline",
        )

    def _identity(self, context: grpc.aio.ServicerContext) -> str:
        if not self._tls:
            return LOCAL_IDENTITY  # plaintext is allowed only on loopback (check_listen_security)
        name = client_identity(context.auth_context(), self._identity_mode)
        return name if name is not None else LOCAL_IDENTITY

    def _trust_list(self) -> bytes:
        if self._pool.trust_list is None:
            raise _Abort(grpc.StatusCode.UNAVAILABLE, "no signing worker has read the keys yet")
        return self._pool.trust_list

    async def _batch(
        self, rpc: str, raw: bytes, request: Any, grant: Grant, context: grpc.aio.ServicerContext
    ) -> bytes:
        count = len(request.items)
        call = calls.current()
        if call is not None:
            call.items += count  # a stream's batches add up
        if count == 0:
            return b""  # no items, no results: the empty response (nothing to admit or sign)
        metrics.BATCH_ITEMS.labels(rpc).observe(count)
        if count > self._max_batch:
            _refused(grant, "over_max_batch")
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"batch of {count} items is over the limit of {self._max_batch}",
            )
        if not self._pool.accepting:
            _refused(grant, "no_worker")
            raise _Abort(
                grpc.StatusCode.UNAVAILABLE, "no signing worker is logged in to the HSM; retry"
            )
        if _signs(rpc, request) and not self._ledger.healthy:
            _refused(grant, "ledger")
            raise _Abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the issuance ledger cannot be written, so nothing is signed; retry "
                f"({self._ledger.problem})",
            )
        admitted = self._too_late(count, context) or self._admission.admit(
            grant, count, time.time()
        )
        if isinstance(admitted, Refusal):
            _refused(grant, admitted.reason)
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                admitted.message,
                retry_info_trailer(admitted),
            )
        metrics.CLIENT_ITEMS.labels(grant.metric_label).inc(count)
        try:
            return await self._dispatch(rpc, raw, request, grant, context)
        finally:
            admitted.release()

    async def _dispatch(
        self,
        rpc: str,
        raw: bytes,
        request: Any,
        grant: Grant,
        context: grpc.aio.ServicerContext,
    ) -> bytes:
        loop = asyncio.get_running_loop()
        remaining = context.time_remaining()
        deadline = loop.time() + remaining if remaining is not None else None
        shared = self._recent.shared(grant.identity, loop.time())
        size = chunk_size(len(request.items), shared=shared, idle_workers=self._pool.idle_workers())
        parts = split(request, raw, size)
        bodies = [body for body, _ in parts]
        chunks = [
            Chunk(rpc, body, grant.types, grant.identity, deadline, loop.create_future(), items=n)
            for body, n in parts
        ]
        for chunk in chunks:
            self._pool.submit(chunk)
        results: list[ChunkResult] | None = None
        try:
            results = await asyncio.gather(*(c.future for c in chunks))
        except ChunkError as e:
            if e.kind == "internal":
                raise _Abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE) from None
            raise _Abort(_CODES.get(e.kind, grpc.StatusCode.UNAVAILABLE), str(e)) from None
        finally:
            for chunk in chunks:
                if results is None:
                    _discard(chunk)
                chunk.future.cancel()  # a chunk still queued is never sent
        responses = [result.response for result in results]
        refused: set[tuple[int, int]] = set()
        if rpc in ("SignBatch", "SignStream", "Reissue") and len(results) > 1:
            refused = refuse_repeated_uvcis(responses, [r.uvcis for r in results], bodies, rpc)
        if rpc == "Reissue":
            refused |= await self._refuse_originals(responses, results)
        if rpc in ("SignBatch", "SignStream", "Reissue"):
            responses = await self._qr.add(responses, request.output)
        if context.done() or (deadline is not None and loop.time() >= deadline - GONE_MARGIN):
            # The caller has gone: nothing of this batch is handed out, so nothing is recorded
            # (its signatures never leave the appliance).
            metrics.DISCARDED.inc(sum(len(r.issued) for r in results))
            raise _Abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the caller has gone")
        entries = ledger_entries(results, refused, rpc, grant.identity, _operator(context))
        try:
            await self._ledger.record(entries)
        except LedgerError as e:
            raise _Abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the issuance ledger cannot be written, so nothing of this batch is returned as "
                f"signed; retry ({e})",
            ) from None
        return b"".join(responses)

    async def _refuse_originals(
        self, responses: list[bytes], results: list[ChunkResult]
    ) -> set[tuple[int, int]]:
        """Reissue only of what this appliance issued and nobody revoked (issue 8 §6): an
        original whose SIGNATURE hash the ledger has no record of is ``hc1_not_issued_here``,
        one whose record's SIGNATURE, UCI or COUNTRYCODEUCI hash is revoked ``hc1_revoked``;
        the new signature of either never leaves."""
        originals = {old for r in results for *_, old in r.issued if old is not None}
        try:
            known = await self._ledger.known(originals)
            revoked = await self._ledger.revoked(known)
        except LedgerError as e:
            raise _Abort(
                grpc.StatusCode.UNAVAILABLE, f"the issuance ledger cannot be read; retry ({e})"
            ) from None
        refused: set[tuple[int, int]] = set()
        for chunk, result in enumerate(results):
            errors = {
                index: NOT_ISSUED_HERE if old not in known else REVOKED
                for index, *_, old in result.issued
                if old not in known or old in revoked
            }
            if errors:
                responses[chunk] = rejected(responses[chunk], errors)
                refused.update((chunk, index) for index in errors)
        return refused


def _refused(grant: Grant, reason: str) -> None:
    """Count a refusal, for the appliance and for the client (bounded by the policy)."""
    metrics.REFUSALS.labels(reason).inc()
    metrics.CLIENT_REFUSALS.labels(grant.metric_label, reason).inc()


def _discard(chunk: Chunk) -> None:
    """Count the signatures of a chunk that finished for a batch that will not be answered."""
    future = chunk.future
    if future.done() and not future.cancelled() and future.exception() is None:
        metrics.DISCARDED.inc(len(future.result().issued))


def _signs(rpc: str, request: Any) -> bool:
    """Whether the call hands out signatures (and so needs a ledger that takes writes)."""
    if rpc in ("SignBatch", "SignStream"):
        return not request.validate_only
    return rpc != "Verify"


def _operator(context: grpc.aio.ServicerContext) -> str | None:
    """The optional ``x-operator-id`` call metadata: who at the client asked for this batch."""
    for key, value in context.invocation_metadata() or ():
        if key == OPERATOR_HEADER:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            if len(text) > MAX_OPERATOR or not text.isprintable():
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{OPERATOR_HEADER} must be printable text of at most {MAX_OPERATOR} "
                    "characters",
                )
            return text
    return None


def _parse(rpc: str, raw: bytes, grant: Grant) -> Any:
    try:
        return checks.parse(rpc, raw)
    except checks.MalformedRequestError as e:
        _refused(grant, "malformed")
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None


async def _end(context: grpc.aio.ServicerContext, error: _Abort) -> None:
    if error.code is grpc.StatusCode.INTERNAL:
        limited_log.error("internal", "RPC ended with INTERNAL")
    trailer: tuple[tuple[str, str | bytes], ...] = error.trailer
    call = calls.current()
    if call is not None:  # the caller can quote it to whoever reads the log
        trailer = (*trailer, (calls.REQUEST_ID_HEADER, call.request_id))
    await context.abort(error.code, str(error), trailing_metadata=trailer)
