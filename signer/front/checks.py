"""The checks of a whole request that the front makes before admitting it (issue 9 §8).

Everything a request carries besides its items' content is checked here, once, before any quota
is charged or any chunk reaches a worker: the protobuf itself, the option values (an algorithm
the API does not know, a QR scale that would cost gigabytes, a verification time no calendar
holds). Item ids are echoed as given, however long: the gRPC message limit bounds them, and
``tests/integration/test_sign_e2e.py`` keeps a 200 000-character one working. A request that
fails is answered INVALID_ARGUMENT with a message that names the field; what is wrong with one
item's content stays a per-item error of the workers.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from signer.api.v1 import signer_pb2 as pb
from signer.errors import RequestError

__all__ = [
    "DEFAULT_QR_SCALE",
    "MAX_QR_SCALE",
    "MAX_VERIFY_AT",
    "MalformedRequestError",
    "parse",
]

#: A QR code's cost grows with the square of its scale (issue 9: one item at scale 1500 took a
#: worker to 3 GB). 32 pixels a module is a 4 000-pixel square for a typical HCERT (version 18,
#: 89 modules and the border): more than any printer needs.
MAX_QR_SCALE = 32
DEFAULT_QR_SCALE = 4

#: The last second of 9999-12-31 UTC: later instants have no calendar date to judge DSC and
#: certificate validity against (Python's datetime ends there).
MAX_VERIFY_AT = 253_402_300_799

_ALGORITHMS = {pb.ALGORITHM_UNSPECIFIED, pb.ALGORITHM_ES256, pb.ALGORITHM_PS256}

#: The request message of each RPC.
REQUESTS: dict[str, type[ProtoMessage]] = {
    "SignBatch": pb.SignBatchRequest,
    "SignStream": pb.SignBatchRequest,
    "Reissue": pb.ReissueRequest,
    "Verify": pb.VerifyRequest,
    "SignHash": pb.SignHashRequest,
    "GetTrustList": pb.GetTrustListRequest,
}


class MalformedRequestError(RequestError):
    """The request as a whole is malformed; the message says which field and why."""


def parse(rpc: str, raw: bytes) -> Any:
    """The request message of ``rpc`` in ``raw``, its options and ids checked; raise
    :class:`MalformedRequestError` for anything the client must fix."""
    request: Any = REQUESTS[rpc]()
    try:
        request.ParseFromString(raw)
    except DecodeError:
        # The parser's own text names internals ("Error parsing message with type …"); what a
        # client needs is which of its mistakes it can be.
        raise MalformedRequestError(
            f"malformed {rpc} request: not a valid {request.DESCRIPTOR.name} protobuf (wrong "
            "message, truncated bytes, or a string field that is not UTF-8)"
        ) from None
    if rpc == "GetTrustList":
        return request
    if rpc in ("SignBatch", "SignStream", "Reissue"):
        _check_options(request)
    elif rpc == "Verify" and not 0 <= request.at <= MAX_VERIFY_AT:
        raise MalformedRequestError(
            f"at {request.at} is not an instant this verifier can judge: seconds since the "
            f"epoch from 1 to {MAX_VERIFY_AT} (9999-12-31T23:59:59Z), or 0 for now"
        )
    return request


def _check_options(request: Any) -> None:
    if request.alg not in _ALGORITHMS:
        raise MalformedRequestError(
            f"alg {request.alg} is not an Algorithm of this API (0 unspecified, 1 ES256, 2 PS256)"
        )
    output = request.output
    if (output.qr_png or output.qr_svg) and output.qr_scale > MAX_QR_SCALE:
        raise MalformedRequestError(
            f"output.qr_scale {output.qr_scale} is over the limit of {MAX_QR_SCALE} (0 = "
            f"{DEFAULT_QR_SCALE})"
        )
