"""Take an ``HC1:`` string apart without trusting it (HCERT.md §10, verifier side).

Each step undoes one step of the issuer pipeline (HCERT.md §1): prefix → base45 → zlib →
COSE_Sign1 → CWT claims → DCC. Nothing here checks a signature: :func:`decode_cose` returns the
parts :mod:`signer.hcert.verify` checks, and only then does the verifier look inside the payload
with :func:`decode_claims` (HCERT.md §10, HS §6.3: verify before processing content).

The input may be hostile (a scanned QR code, a client request), so every failure, whatever its
cause, surfaces as :class:`HcertDecodeError` with a stable :attr:`~HcertDecodeError.reason`, and
both the text and the inflated bytes are size-capped. Whatever is returned fits the Verify
response: times within int64, the DCC a plain JSON value (:mod:`signer.hcert._json_value`).
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeGuard

import cbor2

from signer.domain import CERT_TYPE_BY_GROUP, CertType
from signer.errors import RequestError
from signer.hcert import base45
from signer.hcert._json_value import INT64_MAX, INT64_MIN, NotJsonError, json_value

PREFIX = "HC1:"

#: Longest text accepted. The largest QR code holds 4 296 alphanumeric characters (version 40,
#: ECC L); with the recommended ECC Q it is 2 420 (HCERT.md §6). Anything past twice the former
#: cannot have come from a QR code and is refused before any work is done on it.
MAX_TEXT_CHARS = 8192

#: Cap on the inflated COSE_Sign1. A real HCERT inflates to a few KiB (observed HC1 strings are
#: 205–1 093 characters, HCERT.md §6), but deflate expands up to ~1 000:1, so the ~5 KiB that
#: MAX_TEXT_CHARS allows could otherwise inflate to megabytes (a zip bomb). 64 KiB leaves an
#: order of magnitude of headroom over any QR-sized certificate while bounding memory per call.
MAX_INFLATED_BYTES = 64 * 1024

# Nesting deeper than this is no HCERT; cbor2's default (400) only guards the C stack.
_MAX_CBOR_DEPTH = 64

# COSE header labels and CWT claim keys (RFC 8152 §3.1, RFC 8392 §3; HCERT.md §2, §3).
_ALG = 1
_KID = 4
_ISS = 1
_EXP = 4
_IAT = 6
_HCERT = -260
_EU_DCC_V1 = 1
_TAG_COSE_SIGN1 = 18
_TAG_CWT = 61


class DecodeReason(StrEnum):
    """Why an ``HC1:`` string could not be taken apart (stable; listed in the README)."""

    TOO_LARGE = "too_large"
    PREFIX = "prefix"
    BASE45 = "base45"
    ZLIB = "zlib"
    COSE_STRUCTURE = "cose_structure"
    CWT_STRUCTURE = "cwt_structure"
    HCERT_STRUCTURE = "hcert_structure"


#: Reason → one-line description, for the README and for :mod:`signer.hcert.verify`.
DECODE_REASONS: dict[str, str] = {
    DecodeReason.TOO_LARGE: (
        f"text longer than {MAX_TEXT_CHARS} characters or inflating past {MAX_INFLATED_BYTES} bytes"
    ),
    DecodeReason.PREFIX: 'text does not start with exactly "HC1:"',
    DecodeReason.BASE45: "text after the prefix is not valid base45",
    DecodeReason.ZLIB: "base45 content is not one complete zlib stream",
    DecodeReason.COSE_STRUCTURE: "inflated bytes are not a well-formed COSE_Sign1",
    DecodeReason.CWT_STRUCTURE: "COSE payload is not a CWT claims map with an EU DCC under "
    "-260/1, or iss/iat/exp has the wrong type or range",
    DecodeReason.HCERT_STRUCTURE: "the EU DCC is not a map with exactly one of v/t/r, or holds "
    "a value JSON cannot carry (non-text key, integer beyond 64 bits, NaN, bytes, tag)",
}


class HcertDecodeError(RequestError):
    """An ``HC1:`` string is malformed; :attr:`reason` says at which step.

    A :class:`~signer.errors.RequestError` because the text normally comes from outside.
    """

    def __init__(self, reason: DecodeReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class HcertWarning:
    """Something a verifier tolerates but an issuer must not do (e.g. a float ``iat``)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class CoseSign1:
    """The COSE_Sign1 of an ``HC1:`` string: what the signature check needs, nothing more.

    ``kid`` and ``alg_id`` are resolved across both headers as verifiers must (HCERT.md §3): the
    protected value wins; the unprotected one is used only when the protected header lacks it.
    """

    protected: dict[Any, Any]
    unprotected: dict[Any, Any]
    protected_bstr: bytes
    payload_bstr: bytes
    signature: bytes
    kid: bytes | None
    alg_id: int | None

    def sig_structure(self) -> bytes:
        """The bytes the signature covers: ``["Signature1", protected, h'', payload]`` (§1)."""
        return cbor2.dumps(["Signature1", self.protected_bstr, b"", self.payload_bstr])


@dataclass(frozen=True, slots=True)
class DecodedHcert:
    """The parts of an ``HC1:`` string, decoded but not verified.

    The COSE fields are those of :class:`CoseSign1`. ``iat``/``exp`` are integers within int64
    (a float NumericDate is rounded down, with a warning); ``dcc`` is a plain JSON object with
    exactly one of ``v``/``t``/``r``, whose certificate type is ``cert_type``.
    """

    protected: dict[Any, Any]
    unprotected: dict[Any, Any]
    protected_bstr: bytes
    payload_bstr: bytes
    signature: bytes
    kid: bytes | None
    alg_id: int | None
    claims: dict[Any, Any]
    iss: str | None
    iat: int | None
    exp: int | None
    dcc: dict[str, Any]
    cert_type: CertType
    warnings: tuple[HcertWarning, ...] = ()

    def sig_structure(self) -> bytes:
        """The bytes the signature covers: ``["Signature1", protected, h'', payload]`` (§1)."""
        return cbor2.dumps(["Signature1", self.protected_bstr, b"", self.payload_bstr])


def decode_hc1(text: str) -> DecodedHcert:
    """Decode an ``HC1:`` string into its parts; raise :class:`HcertDecodeError` on any flaw."""
    return decode_claims(decode_cose(text))


def decode_cose(text: str) -> CoseSign1:
    """Prefix → base45 → zlib → COSE_Sign1; raise :class:`HcertDecodeError` on any flaw."""
    try:
        return _decode(text)
    except HcertDecodeError:
        raise
    except Exception as e:  # a parser bug must not escape as anything else
        raise HcertDecodeError(
            DecodeReason.COSE_STRUCTURE, f"undecodable: {type(e).__name__}"
        ) from e


def decode_claims(cose: CoseSign1) -> DecodedHcert:
    """The CWT claims and the DCC inside ``cose``'s payload (HCERT.md §2)."""
    try:
        return _parse_cwt(cose)
    except HcertDecodeError:
        raise
    except Exception as e:  # a parser bug must not escape as anything else
        raise HcertDecodeError(
            DecodeReason.CWT_STRUCTURE, f"undecodable claims: {type(e).__name__}"
        ) from e


def _decode(text: str) -> CoseSign1:
    if not isinstance(text, str):
        raise HcertDecodeError(DecodeReason.PREFIX, "input is not text")
    # Only line endings go: base45 includes SPACE, so spaces are data (HCERT.md §6).
    text = text.rstrip("\r\n")
    if len(text) > MAX_TEXT_CHARS:
        raise HcertDecodeError(
            DecodeReason.TOO_LARGE, f"text has {len(text)} characters, more than {MAX_TEXT_CHARS}"
        )
    # Exactly "HC1:"; "HC2:" etc. are future, incompatible versions (HCERT.md §6).
    if not text.startswith(PREFIX):
        raise HcertDecodeError(DecodeReason.PREFIX, f"text does not start with {PREFIX!r}")
    try:
        compressed = base45.decode(text[len(PREFIX) :])
    except base45.Base45Error as e:
        raise HcertDecodeError(DecodeReason.BASE45, f"not base45: {e}") from e
    return _parse_cose(_inflate(compressed))


def _inflate(data: bytes) -> bytes:
    """zlib is mandatory (HCERT.md §6, TD Z1/Z2); inflate at most MAX_INFLATED_BYTES + 1."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED_BYTES + 1)
    except zlib.error as e:
        raise HcertDecodeError(DecodeReason.ZLIB, f"not zlib: {e}") from e
    if len(out) > MAX_INFLATED_BYTES:
        raise HcertDecodeError(
            DecodeReason.TOO_LARGE, f"inflates to more than {MAX_INFLATED_BYTES} bytes"
        )
    if not inflater.eof:
        raise HcertDecodeError(DecodeReason.ZLIB, "zlib stream is truncated")
    if inflater.unused_data:
        raise HcertDecodeError(DecodeReason.ZLIB, "bytes follow the zlib stream")
    return out


def _cbor(data: bytes, reason: DecodeReason, what: str) -> Any:
    """Decode exactly one CBOR item; duplicate map keys and trailing bytes are errors."""
    fp = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(fp, allow_duplicate_keys=False, max_depth=_MAX_CBOR_DEPTH).decode()
    except Exception as e:  # cbor2 raises CBORDecodeError, but also ValueError & co. on odd input
        raise HcertDecodeError(reason, f"{what} is not valid CBOR: {e}") from e
    if fp.tell() != len(data):
        raise HcertDecodeError(reason, f"{len(data) - fp.tell()} bytes follow the {what}")
    return item


def _parse_cose(data: bytes) -> CoseSign1:
    bad = DecodeReason.COSE_STRUCTURE
    item = _cbor(data, bad, "COSE_Sign1")
    # Issuers emit tag 18; verifiers also accept untagged and tag 61 around tag 18 (HCERT.md §3).
    if isinstance(item, cbor2.CBORTag) and item.tag == _TAG_CWT:
        item = item.value
        if not (isinstance(item, cbor2.CBORTag) and item.tag == _TAG_COSE_SIGN1):
            raise HcertDecodeError(bad, "CWT tag 61 does not wrap a COSE_Sign1 tag 18")
    if isinstance(item, cbor2.CBORTag):
        if item.tag != _TAG_COSE_SIGN1:
            raise HcertDecodeError(bad, f"tag {item.tag} is not COSE_Sign1 (18)")
        item = item.value
    # cbor2 decodes the content of a tag immutably: tuples and frozendicts, not lists and dicts.
    if not isinstance(item, list | tuple) or len(item) != 4:
        raise HcertDecodeError(bad, "COSE_Sign1 is not an array of four elements")
    protected_bstr, unprotected, payload_bstr, signature = item
    if not isinstance(protected_bstr, bytes):
        raise HcertDecodeError(bad, "protected header is not a byte string")
    if not isinstance(unprotected, Mapping):
        raise HcertDecodeError(bad, "unprotected header is not a map")
    if not isinstance(payload_bstr, bytes):
        raise HcertDecodeError(bad, "payload is not a byte string (detached payloads unsupported)")
    if not isinstance(signature, bytes):
        raise HcertDecodeError(bad, "signature is not a byte string")
    # A zero-length protected bstr stands for the empty map (RFC 8152 §3; vector CO20).
    protected = _cbor(protected_bstr, bad, "protected header") if protected_bstr else {}
    if not isinstance(protected, dict):
        raise HcertDecodeError(bad, "protected header is not a map")
    unprotected = dict(unprotected)
    kid = _header(protected, unprotected, _KID, "kid")
    if kid is not None and not isinstance(kid, bytes):
        raise HcertDecodeError(bad, f"kid is a {type(kid).__name__}, not a byte string")
    alg_id = _header(protected, unprotected, _ALG, "alg")
    if alg_id is not None and not _is_int(alg_id):
        # Text algs exist in COSE, but none of them is ES256 or PS256 (HCERT.md §5).
        raise HcertDecodeError(bad, f"alg is a {type(alg_id).__name__}, not an integer")
    return CoseSign1(
        protected=protected,
        unprotected=unprotected,
        protected_bstr=protected_bstr,
        payload_bstr=payload_bstr,
        signature=signature,
        kid=kid,
        alg_id=alg_id,
    )


def _header(protected: dict[Any, Any], unprotected: dict[Any, Any], label: int, name: str) -> Any:
    """The protected value if present, else the unprotected one (HCERT.md §3, HS §3.3.3).

    Presence decides, not validity: a wrong kid in the protected header is not rescued by a
    right one in the unprotected header (TD CO22 INVALID).
    """
    return protected[label] if label in protected else unprotected.get(label)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_cwt(cose: CoseSign1) -> DecodedHcert:
    """Claims map, iss, iat, exp and the DCC (claim -260, sub-claim 1; HCERT.md §2)."""
    bad = DecodeReason.CWT_STRUCTURE
    claims = _cbor(cose.payload_bstr, bad, "CWT payload")
    if not isinstance(claims, dict):
        raise HcertDecodeError(bad, "CWT payload is not a map")
    iss = claims.get(_ISS)
    if iss is not None and not isinstance(iss, str):
        raise HcertDecodeError(bad, "iss (1) is not text")
    warnings: list[HcertWarning] = []
    iat = _numeric_date(claims.get(_IAT), "iat (6)", warnings)
    exp = _numeric_date(claims.get(_EXP), "exp (4)", warnings)
    hcert = claims.get(_HCERT)
    if not isinstance(hcert, dict) or _EU_DCC_V1 not in hcert:
        raise HcertDecodeError(bad, "no EU DCC under hcert (-260) sub-claim 1")
    dcc, cert_type = _parse_dcc(hcert[_EU_DCC_V1])
    return DecodedHcert(
        protected=cose.protected,
        unprotected=cose.unprotected,
        protected_bstr=cose.protected_bstr,
        payload_bstr=cose.payload_bstr,
        signature=cose.signature,
        kid=cose.kid,
        alg_id=cose.alg_id,
        claims=claims,
        iss=iss,
        iat=iat,
        exp=exp,
        dcc=dcc,
        cert_type=cert_type,
        warnings=tuple(warnings),
    )


def _numeric_date(value: object, name: str, warnings: list[HcertWarning]) -> int | None:
    """An integer NumericDate within int64; a finite float is rounded down, with a warning.

    Issuers MUST write integers (HCERT.md §2, TD I-CO4), but RFC 8392 allows floats and the
    reference verifiers read the ES and HU test certificates that carry them (issue 10).
    """
    bad = DecodeReason.CWT_STRUCTURE
    if value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HcertDecodeError(bad, f"{name} is {value}, not a time")
        number = math.floor(value)
        warnings.append(
            HcertWarning("float_time", f"{name} is the float {value!r}, read as {number}")
        )
    elif _is_int(value):  # a CBOR true is no integer
        number = value
    else:
        raise HcertDecodeError(bad, f"{name} is a {type(value).__name__}, not an integer")
    if not INT64_MIN <= number <= INT64_MAX:
        raise HcertDecodeError(bad, f"{name} {number} is outside the 64-bit range")
    return number


def _parse_dcc(value: object) -> tuple[dict[str, Any], CertType]:
    """The DCC as a JSON object with exactly one of v/t/r (HCERT.md §2, PAYLOAD.md top level)."""
    bad = DecodeReason.HCERT_STRUCTURE
    if not isinstance(value, Mapping):
        raise HcertDecodeError(bad, f"the EU DCC (-260/1) is a {type(value).__name__}, not a map")
    try:
        dcc = json_value(value)
    except NotJsonError as e:
        raise HcertDecodeError(bad, f"the EU DCC has no JSON form at {e}") from e
    groups = [group for group in CERT_TYPE_BY_GROUP if group in dcc]
    if len(groups) != 1:
        found = ", ".join(groups) or "none"
        raise HcertDecodeError(bad, f"the EU DCC needs exactly one of v/t/r, found {found}")
    return dcc, CERT_TYPE_BY_GROUP[groups[0]]
