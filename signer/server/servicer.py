"""Protobuf ⇄ domain values, and nothing else: protobuf types never leave this module.

Signing runs on the worker's single HSM thread (``hsm_executor``); the event loop only moves
bytes. SignStream keeps at most ``window`` batches of one stream in flight and reads the next
request only when one is done, so a stream of any length holds bounded memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import TypeVar

import grpc
import orjson

from signer.api.v1 import signer_pb2 as pb
from signer.api.v1 import signer_pb2_grpc as pb_grpc
from signer.domain import (
    Alg,
    CertType,
    HashItem,
    HcertItem,
    ItemError,
    ItemResult,
    OutputOptions,
    SignItem,
)
from signer.hcert.verify import Verification
from signer.keys.registry import KeyRegistry
from signer.keys.state import KeyState
from signer.service import SigningService
from signer.verification import VerificationService

_T = TypeVar("_T")
_ALG_FROM_PB = {pb.ALGORITHM_ES256: Alg.ES256, pb.ALGORITHM_PS256: Alg.PS256}
_ALG_TO_PB = {v: k for k, v in _ALG_FROM_PB.items()}
_TYPE_TO_PB = {
    CertType.VACCINATION: pb.CERTIFICATE_TYPE_VACCINATION,
    CertType.TEST: pb.CERTIFICATE_TYPE_TEST,
    CertType.RECOVERY: pb.CERTIFICATE_TYPE_RECOVERY,
}
_STATE_TO_PB = {
    KeyState.PENDING: pb.KEY_STATE_PENDING,
    KeyState.ACTIVE: pb.KEY_STATE_ACTIVE,
    KeyState.RETIRED: pb.KEY_STATE_RETIRED,
}


class SignerServicer(pb_grpc.SignerServicer):
    def __init__(
        self,
        service: SigningService,
        verification: VerificationService,
        registry: KeyRegistry,
        hsm_executor: Executor,
        window: int,
    ) -> None:
        self._service = service
        self._verification = verification
        self._registry = registry
        self._hsm = hsm_executor
        self._window = window

    async def SignBatch(
        self, request: pb.SignBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignBatchResponse:
        return await self._submit(request, "SignBatch")

    async def SignStream(
        self,
        request_iterator: AsyncIterator[pb.SignBatchRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.SignBatchResponse]:
        pending: deque[asyncio.Future[pb.SignBatchResponse]] = deque()
        try:
            async for request in request_iterator:
                pending.append(asyncio.ensure_future(self._submit(request, "SignStream")))
                if len(pending) >= self._window:
                    yield await pending.popleft()
            while pending:
                yield await pending.popleft()
        finally:
            for future in pending:
                future.cancel()

    async def GetTrustList(
        self, request: pb.GetTrustListRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTrustListResponse:
        return pb.GetTrustListResponse(
            entries=[
                pb.TrustListEntry(
                    label=entry.label,
                    kid=entry.dsc.kid,
                    alg=_ALG_TO_PB[entry.dsc.alg],
                    certificate_der=entry.dsc.der,
                    not_before=entry.dsc.not_before,
                    not_after=entry.dsc.not_after,
                    certificate_types=sorted(_TYPE_TO_PB[t] for t in entry.dsc.types),
                    state=_STATE_TO_PB[entry.state],
                    subject=entry.dsc.certificate.subject.rfc4514_string(),
                )
                for entry in self._registry.entries  # an immutable snapshot: no HSM call
            ]
        )

    async def Reissue(
        self, request: pb.ReissueRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignBatchResponse:
        return await self._on_hsm_thread(self._reissue, request)

    async def Verify(
        self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyResponse:
        return await self._on_hsm_thread(self._verify, request)

    async def SignHash(
        self, request: pb.SignHashRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignHashResponse:
        return await self._on_hsm_thread(self._sign_hashes, request)

    async def _submit(self, request: pb.SignBatchRequest, rpc: str) -> pb.SignBatchResponse:
        return await self._on_hsm_thread(self._sign, request, rpc)

    async def _on_hsm_thread(self, function: Callable[..., _T], *args: object) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._hsm, function, *args)

    # The methods below run on the HSM thread.

    def _sign(self, request: pb.SignBatchRequest, rpc: str) -> pb.SignBatchResponse:
        items = [SignItem(item.id, item.payload_json) for item in request.items]
        results = self._service.sign_batch(
            items, _ALG_FROM_PB.get(request.alg), rpc, _output(request.output)
        )
        return _batch_response(results)

    def _reissue(self, request: pb.ReissueRequest) -> pb.SignBatchResponse:
        items = [HcertItem(item.id, item.hc1) for item in request.items]
        results = self._service.reissue_batch(
            items, _ALG_FROM_PB.get(request.alg), _output(request.output)
        )
        return _batch_response(results)

    def _verify(self, request: pb.VerifyRequest) -> pb.VerifyResponse:
        items = [HcertItem(item.id, item.hc1) for item in request.items]
        verdicts = self._verification.verify_batch(items, request.at or None)
        return pb.VerifyResponse(
            results=[_verdict_to_pb(i.id, v) for i, v in zip(items, verdicts, strict=True)]
        )

    def _sign_hashes(self, request: pb.SignHashRequest) -> pb.SignHashResponse:
        items = [HashItem(item.id, item.digest) for item in request.items]
        alg, results = self._service.sign_hashes(items, request.kid)
        return pb.SignHashResponse(
            alg=_ALG_TO_PB[alg],
            results=[
                pb.HashResult(id=r.id, signature=r.signature)
                if r.signature is not None
                else pb.HashResult(id=r.id, rejected=_rejected(r.errors))
                for r in results
            ],
        )


def _output(options: pb.OutputOptions) -> OutputOptions | None:
    if not (options.qr_png or options.qr_svg):
        return None
    return OutputOptions(options.qr_png, options.qr_svg, options.qr_scale or 4)


def _rejected(errors: tuple[ItemError, ...]) -> pb.Rejected:
    return pb.Rejected(errors=[_error_to_pb(e) for e in errors])


def _error_to_pb(error: ItemError) -> pb.ItemError:
    return pb.ItemError(code=error.code, path=error.path, message=error.message)


def _verdict_to_pb(item_id: str, verdict: Verification) -> pb.VerifyResult:
    result = pb.VerifyResult(
        id=item_id, valid=verdict.ok, reason=verdict.reason or "", message=verdict.message
    )
    decoded = verdict.decoded
    if decoded is not None:
        alg = Alg.from_cose_id(decoded.alg_id)
        result.kid = decoded.kid or b""
        result.alg = _ALG_TO_PB[alg] if alg is not None else pb.ALGORITHM_UNSPECIFIED
        result.iss = decoded.iss or ""
        result.iat = decoded.iat or 0
        result.exp = decoded.exp or 0
        if decoded.dcc is not None:
            result.payload_json = orjson.dumps(decoded.dcc, default=str).decode()
    if verdict.dsc is not None:
        result.dsc_subject = verdict.dsc.certificate.subject.rfc4514_string()
    return result


def _batch_response(results: list[ItemResult]) -> pb.SignBatchResponse:
    """Filled in place through ``results.add()``: a third of the cost of building a message per
    item and passing the list (measured: 0.9 against 3.0 µs per item)."""
    response = pb.SignBatchResponse()
    add = response.results.add
    for result in results:
        out = add(id=result.id)
        signed = result.signed
        if signed is None:
            out.rejected.errors.extend(_error_to_pb(e) for e in result.errors)
            continue
        message = out.signed
        message.hc1 = signed.hc1
        message.kid = signed.kid
        message.alg = _ALG_TO_PB[signed.alg]
        message.iat = signed.iat
        message.exp = signed.exp
        if signed.warnings:
            message.warnings.extend(_error_to_pb(w) for w in signed.warnings)
        if signed.qr_png is not None:
            message.qr_png = signed.qr_png
        if signed.qr_svg is not None:
            message.qr_svg = signed.qr_svg
    return response
