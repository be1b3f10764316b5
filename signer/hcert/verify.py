"""Verify an ``HC1:`` string against trusted DSCs, the way a conforming verifier does.

Order (HCERT.md §10, HS §6.3): decode the COSE_Sign1 → pick DSCs by kid → check the signature
with each of them → only then read the claims and the DCC inside (structure, then the DSC's
certificate types) → times → optionally the DCC schema. The signing service uses this to
re-issue certificates (``check_time=False``); tests use it next to pycose.

Every outcome is a :class:`Verification` value with a stable ``reason`` from
:data:`VERIFY_REASONS` and the ``warnings`` of :data:`VERIFY_WARNINGS`; nothing the text
contains makes :func:`verify_hc1` raise, and every field of the outcome fits the Verify
response (int64 times, a JSON payload; :mod:`signer.hcert.decode`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signer.domain import Alg, CertType
from signer.errors import ConfigError
from signer.hcert.decode import (
    DECODE_REASONS,
    DecodedHcert,
    HcertDecodeError,
    HcertWarning,
    decode_claims,
    decode_cose,
)
from signer.hcert.dsc_types import dcc_types, dsc_country
from signer.hcert.schema import schema_problems

#: How far iat may lie in the future before the certificate counts as not yet valid: the
#: issuer's and the verifier's clocks disagree a little.
CLOCK_SKEW = timedelta(minutes=5)

KID_LENGTH = 8  # HCERT.md §4, TD I-CO2

_ES256_SIGNATURE_LENGTH = 64  # raw r || s, 32 bytes each (HCERT.md §5)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)  # HCERT.md §5

#: Reason → one-line description (stable codes, for the README). ``ok`` results carry no reason.
VERIFY_REASONS: Mapping[str, str] = MappingProxyType(
    {
        **DECODE_REASONS,
        "unsupported_alg": "alg is absent or neither ES256 (-7) nor PS256 (-37)",
        "unknown_kid": "no kid in either header, or no trusted DSC has that kid",
        "alg_key_mismatch": "alg does not fit the key of any DSC with that kid (ES256 needs "
        "P-256, PS256 needs RSA)",
        "bad_signature": "signature does not verify with any DSC with that kid",
        "no_expiry": "time checked but the CWT has no exp claim",
        "expired": "exp lies before the verification time",
        "not_yet_valid": "iat lies after the verification time (beyond clock skew), or the DSC "
        "is not valid yet",
        "dsc_expired": "the DSC that verified the signature expired before the verification time",
        "dsc_type_not_allowed": "the DSC's DCC extended key usage does not allow this "
        "certificate type (v: vaccination, t: test, r: recovery)",
        "schema": "asked for (--schema): the DCC does not follow the EU DCC JSON schema 1.3",
    }
)

#: Warning code → description: things verifiers tolerate but issuers must not do. A warning
#: never fails a certificate; it travels in ``message`` (and the CLI's ``warnings``).
VERIFY_WARNINGS: Mapping[str, str] = MappingProxyType(
    {
        "float_time": "iat or exp is a CBOR float, read rounded down (issuers must write integers)",
        "exp_after_dsc": "exp lies after the DSC's notAfter (HCERT.md §7: it must not)",
        "iss_country": "iss differs from the country (C) in the DSC's subject",
    }
)


def kid_of(certificate_der: bytes) -> bytes:
    """The HCERT key identifier: the first 8 bytes of SHA-256 over the DSC's DER (HCERT.md §4)."""
    return hashlib.sha256(certificate_der).digest()[:KID_LENGTH]


@dataclass(frozen=True, slots=True)
class TrustedDsc:
    """A Document Signer Certificate the verifier trusts, with its kid.

    ``types`` (from the DCC EKUs, :func:`~signer.hcert.dsc_types.dcc_types`) and ``country``
    are read once here, not per certificate verified.
    """

    certificate: x509.Certificate
    kid: bytes
    types: frozenset[CertType] = field(init=False, compare=False)
    country: str | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", dcc_types(self.certificate))
        object.__setattr__(self, "country", dsc_country(self.certificate))

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> TrustedDsc:
        return cls(cert, kid_of(cert.public_bytes(serialization.Encoding.DER)))


class TrustStore:
    """Trusted DSCs indexed by kid.

    A kid is only 8 bytes, so several DSCs may share one; :meth:`lookup` returns all of them and
    the verifier tries each (HCERT.md §3, HS §3.3.3).
    """

    def __init__(self, dscs: Iterable[TrustedDsc]) -> None:
        by_kid: dict[bytes, list[TrustedDsc]] = {}
        for dsc in dscs:
            same = by_kid.setdefault(dsc.kid, [])
            if all(other.certificate != dsc.certificate for other in same):
                same.append(dsc)
        self._by_kid = {kid: tuple(found) for kid, found in by_kid.items()}

    @classmethod
    def load_pem_dir(cls, path: str | Path) -> TrustStore:
        """Every certificate in every ``*.pem`` / ``*.crt`` file of ``path`` (not recursive).

        A file may hold several PEM certificates; a ``.crt`` without PEM armour is read as DER.
        Unreadable files are the operator's problem: :class:`~signer.errors.ConfigError`.
        """
        directory = Path(path)
        dscs: list[TrustedDsc] = []
        try:
            files = sorted(p for p in directory.iterdir() if p.suffix.lower() in {".pem", ".crt"})
        except OSError as e:
            raise ConfigError(f"cannot list DSC directory {directory}: {e}") from e
        for file in files:
            try:
                data = file.read_bytes()
                if b"-----BEGIN" in data:
                    certs = x509.load_pem_x509_certificates(data)
                else:
                    certs = [x509.load_der_x509_certificate(data)]
            except (OSError, ValueError) as e:
                raise ConfigError(f"cannot load DSC certificates from {file}: {e}") from e
            dscs.extend(TrustedDsc.from_certificate(cert) for cert in certs)
        return cls(dscs)

    def lookup(self, kid: bytes) -> tuple[TrustedDsc, ...]:
        """All trusted DSCs with this kid, in insertion order; empty when there are none."""
        return self._by_kid.get(kid, ())

    def __iter__(self) -> Iterator[TrustedDsc]:
        for found in self._by_kid.values():
            yield from found

    def __len__(self) -> int:
        return sum(len(found) for found in self._by_kid.values())


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of :func:`verify_hc1`.

    ``ok`` is True exactly when ``reason`` is None. ``decoded`` is set whenever the text could
    be decoded in full, ``dsc`` whenever a DSC verified the signature (even if a later check
    failed). ``message`` ends with the warnings, for clients that show only the message (the
    Verify response has no field of its own for them yet).
    """

    ok: bool
    reason: str | None
    message: str
    decoded: DecodedHcert | None
    dsc: TrustedDsc | None
    warnings: tuple[HcertWarning, ...] = ()


def verify_hc1(
    text: str,
    trust: TrustStore,
    *,
    at: datetime | None = None,
    check_time: bool = True,
    schema: bool = False,
) -> Verification:
    """Verify ``text`` against ``trust``, at ``at`` (timezone-aware; default: now).

    ``check_time=False`` skips the time rules: for re-issuing expired certificates.
    ``schema=True`` also checks the DCC against the EU DCC schema (reason ``schema``).
    """
    if at is None:
        at = datetime.now(UTC)
    elif at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    try:
        cose = decode_cose(text)
    except HcertDecodeError as e:
        return Verification(False, e.reason.value, str(e), None, None)

    alg = Alg.from_cose_id(cose.alg_id)
    if alg is None:
        return _fail("unsupported_alg", f"alg {cose.alg_id} is neither ES256 (-7) nor PS256 (-37)")
    if cose.kid is None:
        return _fail("unknown_kid", "the certificate carries no kid in either header")
    kid_text = base64.b64encode(cose.kid).decode()
    candidates = trust.lookup(cose.kid)
    if not candidates:
        extra = "" if len(cose.kid) == KID_LENGTH else f" (a kid has {KID_LENGTH} bytes)"
        return _fail("unknown_kid", f"no trusted DSC has kid {kid_text}{extra}")
    fitting = [dsc for dsc in candidates if _key_fits(alg, dsc)]
    if not fitting:
        return _fail(
            "alg_key_mismatch",
            f"{alg.value} does not fit the key of {_dscs(len(candidates))} with kid {kid_text}",
        )
    signed_bytes = cose.sig_structure()
    signer = next(
        (
            dsc
            for dsc in fitting
            if signature_matches(alg, dsc.certificate, cose.signature, signed_bytes)
        ),
        None,
    )
    if signer is None:
        return _fail(
            "bad_signature",
            f"{alg.value} signature does not verify with {_dscs(len(fitting))} with kid {kid_text}",
        )
    # Only now is the payload worth reading (HS §6.3).
    try:
        decoded = decode_claims(cose)
    except HcertDecodeError as e:
        return _fail(e.reason.value, str(e), dsc=signer)
    warnings = (*decoded.warnings, *_dsc_warnings(decoded, signer))
    problem = _problem(decoded, signer, at, check_time=check_time, schema=schema)
    if problem is not None:
        return _fail(*problem, decoded=decoded, dsc=signer, warnings=warnings)
    message = _with_warnings(f"valid, signed by {_subject(signer)}", warnings)
    return Verification(True, None, message, decoded, signer, warnings)


def _fail(
    reason: str,
    message: str,
    *,
    decoded: DecodedHcert | None = None,
    dsc: TrustedDsc | None = None,
    warnings: tuple[HcertWarning, ...] = (),
) -> Verification:
    return Verification(False, reason, _with_warnings(message, warnings), decoded, dsc, warnings)


def _with_warnings(message: str, warnings: tuple[HcertWarning, ...]) -> str:
    return message + "".join(f"; warning {w.code}: {w.message}" for w in warnings)


def _problem(
    decoded: DecodedHcert, dsc: TrustedDsc, at: datetime, *, check_time: bool, schema: bool
) -> tuple[str, str] | None:
    """The first failed rule after the structure, as (reason, message)."""
    if decoded.cert_type not in dsc.types:
        allowed = ", ".join(sorted(dsc.types)) or "nothing (its extensions cannot be read)"
        return (
            "dsc_type_not_allowed",
            f"a {decoded.cert_type} certificate, but the DSC's extended key usage allows "
            f"{allowed} (HCERT.md §7)",
        )
    if check_time:
        problem = _time_problem(decoded, dsc.certificate, at)
        if problem is not None:
            return problem
    if schema:
        problems = schema_problems(decoded.dcc)
        if problems:
            return "schema", "; ".join(problems)
    return None


def _dsc_warnings(decoded: DecodedHcert, dsc: TrustedDsc) -> list[HcertWarning]:
    """Rules an issuer breaks but verifiers tolerate (HCERT.md §2 "observed deviations")."""
    warnings: list[HcertWarning] = []
    not_after = dsc.certificate.not_valid_after_utc
    if decoded.exp is not None and decoded.exp > not_after.timestamp():
        warnings.append(
            HcertWarning(
                "exp_after_dsc",
                f"exp {_iso(decoded.exp)} is after the DSC's notAfter {not_after.isoformat()}",
            )
        )
    if decoded.iss is not None and dsc.country is not None and decoded.iss.upper() != dsc.country:
        warnings.append(
            HcertWarning(
                "iss_country", f"iss {decoded.iss[:16]!r} is not the DSC's country {dsc.country!r}"
            )
        )
    return warnings


def _key_fits(alg: Alg, dsc: TrustedDsc) -> bool:
    """ES256 needs a P-256 key, PS256 an RSA key (HCERT.md §5; TD CO27, vectors ES/401–403)."""
    try:
        key = dsc.certificate.public_key()
    except Exception:  # an unsupported key type in a trusted certificate fits no alg
        return False
    if alg is Alg.ES256:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    return isinstance(key, rsa.RSAPublicKey)


def signature_matches(
    alg: Alg, certificate: x509.Certificate, signature: bytes, message: bytes
) -> bool:
    """Does ``signature`` (COSE form) over ``message`` verify with the certificate's key?"""
    key = certificate.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            # COSE carries raw r || s; cryptography wants DER (HCERT.md §5, RFC 8152 §8.1).
            if len(signature) != _ES256_SIGNATURE_LENGTH:
                return False
            half = _ES256_SIGNATURE_LENGTH // 2
            r = int.from_bytes(signature[:half], "big")
            s = int.from_bytes(signature[half:], "big")
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, _PSS, hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _time_problem(
    decoded: DecodedHcert, dsc: x509.Certificate, at: datetime
) -> tuple[str, str] | None:
    """The first failed time rule, as (reason, message); HCERT.md §2 and §10 (HK order)."""
    now = at.timestamp()
    if decoded.exp is None:
        return "no_expiry", "the certificate has no exp claim, so its validity is unbounded"
    if decoded.exp < now:
        return "expired", f"the certificate expired at {_iso(decoded.exp)}"
    if decoded.iat is not None and decoded.iat > now + CLOCK_SKEW.total_seconds():
        return "not_yet_valid", f"the certificate is issued in the future, at {_iso(decoded.iat)}"
    if dsc.not_valid_before_utc > at:
        return "not_yet_valid", f"the DSC is valid only from {dsc.not_valid_before_utc.isoformat()}"
    if dsc.not_valid_after_utc < at:
        return "dsc_expired", f"the DSC expired at {dsc.not_valid_after_utc.isoformat()}"
    return None


def _dscs(count: int) -> str:
    return "the one DSC" if count == 1 else f"any of the {count} DSCs"


def _iso(timestamp: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return f"NumericDate {timestamp}"


def _subject(dsc: TrustedDsc) -> str:
    return (
        f"DSC {dsc.certificate.subject.rfc4514_string()} (kid {base64.b64encode(dsc.kid).decode()})"
    )
