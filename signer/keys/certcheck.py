"""What ``signer keys import-cert`` demands of a DSC before it goes into the token (issue 4 §1).

Every problem is collected and reported at once, so the officer can send the CA one complete
correction request. Profile: HCERT.md §7 (key usage, DCC EKU OIDs, subject CN + C, AKI = CSCA
SKI) and §4 (kid). :func:`chain_problems` is also what the servers' key registry asks of every
DSC before it serves it (issue 8: a DSC that does not chain to a configured CSCA never signs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from signer.domain import CertType
from signer.errors import KeyStateError
from signer.keys.dsc import DscFacts, certificate_types


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    """A PEM or DER certificate; KeyStateError naming ``what`` when it is neither."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise KeyStateError(f"{what} is not an X.509 certificate in PEM or DER: {e}") from e


@dataclass(frozen=True, slots=True)
class CheckedDsc:
    facts: DscFacts
    warnings: tuple[str, ...]  # acceptable, but worth telling the officer


def check_dsc(
    certificate: x509.Certificate,
    *,
    token_public_key_der: bytes,
    declared_types: Iterable[CertType],
    country: str,
    now: dt.datetime,
    cscas: Sequence[x509.Certificate],
) -> CheckedDsc:
    """Raise KeyStateError listing every way ``certificate`` is not a DSC for this key, issued
    by one of ``cscas``."""
    problems: list[str] = []
    warnings: list[str] = []
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    token_spki = serialization.load_der_public_key(token_public_key_der).public_bytes(
        serialization.Encoding.DER, spki
    )
    if certificate.public_key().public_bytes(serialization.Encoding.DER, spki) != token_spki:
        problems.append("its public key is not the HSM key's: it certifies another key")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            problems.append("keyUsage lacks digitalSignature (HCERT.md §7)")
    except x509.ExtensionNotFound:
        problems.append("no keyUsage extension; a DSC needs digitalSignature (HCERT.md §7)")
    declared = frozenset(declared_types)
    certified = certificate_types(certificate)
    if certified != declared:
        problems.append(
            "its DCC extended key usage allows "
            f"{_names(certified)} but the key was generated for {_names(declared)} "
            "(EKU 1.3.6.1.4.1.1847.2021.1.1 test, .2 vaccination, .3 recovery)"
        )
    countries = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)]
    if countries != [country]:
        problems.append(
            f"subject country is {countries or 'missing'}, must be exactly [issuer] country "
            f"{country!r}"
        )
    if not certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        problems.append("subject has no CN (HCERT.md §7)")
    if certificate.not_valid_after_utc < now:
        problems.append(f"it expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    elif certificate.not_valid_before_utc > now:
        warnings.append(
            f"valid only from {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: the key "
            "cannot sign before then"
        )
    problems.extend(chain_problems(certificate, cscas))
    facts: DscFacts | None = None
    try:
        facts = DscFacts.from_der(certificate.public_bytes(serialization.Encoding.DER))
    except ValueError as e:
        problems.append(str(e))
    if problems or facts is None:
        raise KeyStateError("certificate refused: " + "; ".join(problems))
    return CheckedDsc(facts, tuple(warnings))


def chain_problems(certificate: x509.Certificate, cscas: Sequence[x509.Certificate]) -> list[str]:
    """Nothing when one of ``cscas`` issued ``certificate`` — its signature verifies, the DSC's
    AKI is the CSCA's SKI (HCERT.md §7) and the DSC's validity lies within the CSCA's — else
    why not. The one chain check of ``import-cert`` and of the servers."""
    if not cscas:
        return ["no CSCA to check it against ([issuer] csca)"]
    per_csca = [_problems_under(certificate, csca) for csca in cscas]
    if any(not problems for problems in per_csca):
        return []
    if len(per_csca) == 1:
        return per_csca[0]
    tried = "; ".join(f"{', '.join(p)}" for p in per_csca)
    return [f"chains to none of the {len(cscas)} CSCAs ({tried})"]


def _problems_under(certificate: x509.Certificate, csca: x509.Certificate) -> list[str]:
    name = _common_name(csca)
    problems: list[str] = []
    try:
        certificate.verify_directly_issued_by(csca)
    except (ValueError, TypeError, InvalidSignature) as e:
        problems.append(f"not issued by CSCA {name!r} ({type(e).__name__}: {e})")
        return problems  # the rest compares with a CSCA that is not its issuer
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = csca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        if aki.key_identifier != ski.digest:
            problems.append(
                f"its authorityKeyIdentifier is not the subjectKeyIdentifier of CSCA {name!r}"
            )
    except x509.ExtensionNotFound as e:
        problems.append(f"AKI/SKI missing: {e} (HCERT.md §7: AKI MUST equal the CSCA's SKI)")
    if (
        certificate.not_valid_before_utc < csca.not_valid_before_utc
        or certificate.not_valid_after_utc > csca.not_valid_after_utc
    ):
        problems.append(
            f"valid {_day(certificate.not_valid_before_utc)} to "
            f"{_day(certificate.not_valid_after_utc)}, outside the validity of CSCA {name!r} "
            f"({_day(csca.not_valid_before_utc)} to {_day(csca.not_valid_after_utc)})"
        )
    return problems


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def _day(when: dt.datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M} UTC"


def _names(types: frozenset[CertType]) -> str:
    return ",".join(sorted(t.value for t in types)) or "nothing"
