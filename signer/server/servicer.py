"""Protobuf ⇄ domain values, and nothing else: protobuf types never leave this module.

Signing runs on the worker's single HSM thread (``hsm_executor``); the event loop only moves
bytes. SignStream keeps at most ``window`` batches of one stream in flight and reads the next
request only when one is done, so a stream of any length holds bounded memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor

import grpc

from signer.api.v1 import signer_pb2 as pb
from signer.api.v1 import signer_pb2_grpc as pb_grpc
from signer.domain import Alg, CertType, ItemResult, SignItem
from signer.keys.registry import KeyRegistry
from signer.keys.state import KeyState
from signer.service import SigningService

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
        registry: KeyRegistry,
        hsm_executor: Executor,
        window: int,
    ) -> None:
        self._service = service
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

    async def _submit(self, request: pb.SignBatchRequest, rpc: str) -> pb.SignBatchResponse:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._hsm, self._sign, request, rpc)

    def _sign(self, request: pb.SignBatchRequest, rpc: str) -> pb.SignBatchResponse:
        """Runs on the HSM thread."""
        items = [SignItem(item.id, item.payload_json) for item in request.items]
        results = self._service.sign_batch(items, _ALG_FROM_PB.get(request.alg), rpc)
        return pb.SignBatchResponse(results=[_result_to_pb(r) for r in results])


def _result_to_pb(result: ItemResult) -> pb.ItemResult:
    signed = result.signed
    if signed is not None:
        return pb.ItemResult(
            id=result.id,
            signed=pb.Signed(
                hc1=signed.hc1,
                kid=signed.kid,
                alg=_ALG_TO_PB[signed.alg],
                iat=signed.iat,
                exp=signed.exp,
            ),
        )
    return pb.ItemResult(
        id=result.id,
        rejected=pb.Rejected(
            errors=[
                pb.ItemError(code=e.code, path=e.path, message=e.message) for e in result.errors
            ]
        ),
    )
