"""Protobuf ⇄ domain values for a worker: a chunk's request bytes in, its response bytes out.

Protobuf types never get past this module (and the front's handlers, which only split and join
messages). Runs on the worker's one thread, which is also its HSM thread.
"""

from __future__ import annotations

import orjson

from signer.api.v1 import signer_pb2 as pb
from signer.domain import (
    Alg,
    CertType,
    HashItem,
    HcertItem,
    ItemError,
    ItemResult,
    SignItem,
)
from signer.hcert.revocation import signature_hash
from signer.hcert.verify import Verification
from signer.keys.registry import KeyRegistry
from signer.keys.state import KeyState
from signer.ledger.records import pack_item
from signer.service import Ready, SigningService
from signer.verification import VerificationService

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

#: (index in the chunk, JSON path, UVCI) of each signed item: the front refuses a UVCI repeated
#: across the chunks of one batch.
Uvcis = list[tuple[int, str, str]]

#: (index in the chunk, ledger item bytes, SIGNATURE hash, SIGNATURE hash of the certificate a
#: Reissue replaces) of each signed item, for the front's ledger.
Issued = list[tuple[int, bytes, bytes, bytes | None]]


def sign_chunk(
    service: SigningService, body: bytes, rpc: str, types: frozenset[CertType]
) -> tuple[bytes, Uvcis, Issued]:
    request = pb.SignBatchRequest.FromString(body)
    items = [SignItem(item.id, item.payload_json) for item in request.items]
    if request.validate_only:
        return _validate_only(service.validate_batch(items, types))
    # QR codes (request.output) are the front's work, off this HSM thread (signer.front.qr).
    results = service.sign_batch(items, _ALG_FROM_PB.get(request.alg), types)
    return _batch_response(results).SerializeToString(), _uvcis(results), _issued(results)


def _validate_only(outcomes: list[ItemResult | Ready]) -> tuple[bytes, Uvcis, Issued]:
    """Each item rejected or ``valid``; the UVCIs go to the front's cross-chunk duplicate check
    as a signed item's do, and nothing goes to the ledger."""
    response = pb.SignBatchResponse()
    uvcis: Uvcis = []
    for index, outcome in enumerate(outcomes):
        out = response.results.add(id=outcome.id)
        if isinstance(outcome, ItemResult):
            out.rejected.errors.extend(_error_to_pb(e) for e in outcome.errors)
            continue
        out.valid.certificate_type = _TYPE_TO_PB[outcome.cert_type]
        out.valid.warnings.extend(_error_to_pb(w) for w in outcome.warnings)
        if outcome.uvci is not None:
            uvcis.append((index, outcome.uvci_path, outcome.uvci))
    return response.SerializeToString(), uvcis, []


def reissue_chunk(
    service: SigningService, body: bytes, types: frozenset[CertType]
) -> tuple[bytes, Uvcis, Issued]:
    request = pb.ReissueRequest.FromString(body)
    items = [HcertItem(item.id, item.hc1) for item in request.items]
    results = service.reissue_batch(items, _ALG_FROM_PB.get(request.alg), types)
    return _batch_response(results).SerializeToString(), _uvcis(results), _issued(results)


def verify_chunk(verification: VerificationService, body: bytes) -> bytes:
    request = pb.VerifyRequest.FromString(body)
    items = [HcertItem(item.id, item.hc1) for item in request.items]
    verdicts = verification.verify_batch(items, request.at or None)
    response = pb.VerifyResponse(
        results=[_verdict_to_pb(i.id, v) for i, v in zip(items, verdicts, strict=True)]
    )
    return response.SerializeToString()


def sign_hash_chunk(service: SigningService, body: bytes) -> tuple[bytes, Issued]:
    request = pb.SignHashRequest.FromString(body)
    items = [HashItem(item.id, item.digest) for item in request.items]
    alg, results = service.sign_hashes(items, request.kid)
    issued: Issued = []
    for index, result in enumerate(results):
        if result.signature is not None:
            signature = signature_hash(result.signature, alg)
            item = pack_item(request.kid, alg.value, None, None, None, None, None, signature, None)
            issued.append((index, item, signature, None))
    response = pb.SignHashResponse(
        alg=_ALG_TO_PB[alg],
        results=[
            pb.HashResult(id=r.id, signature=r.signature)
            if r.signature is not None
            else pb.HashResult(id=r.id, rejected=_rejected(r.errors))
            for r in results
        ],
    )
    return response.SerializeToString(), issued


def trust_list(registry: KeyRegistry) -> bytes:
    """The GetTrustList response for the registry's current entries, serialised."""
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
            for entry in registry.entries
        ]
    ).SerializeToString()


def _uvcis(results: list[ItemResult]) -> Uvcis:
    return [
        (index, *r.signed.uvci)
        for index, r in enumerate(results)
        if r.signed is not None and r.signed.uvci is not None
    ]


def _issued(results: list[ItemResult]) -> Issued:
    issued = []
    for index, result in enumerate(results):
        signed = result.signed
        if signed is None or signed.issuance is None:
            continue
        cert_type, uci, country_uci, signature, replaces = signed.issuance
        item = pack_item(
            signed.kid,
            signed.alg.value,
            cert_type.value if cert_type is not None else None,
            signed.iat,
            signed.exp,
            uci,
            country_uci,
            signature,
            replaces,
        )
        issued.append((index, item, signature, replaces))
    return issued


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
    return response
