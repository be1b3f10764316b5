"""What ``signer keys import-cert`` demands of a DSC before it goes into the token (issue 4 §1).

Every problem is collected and reported at once, so the officer can send the CA one complete
correction request. Profile: HCERT.md §7 (key usage, DCC EKU OIDs, subject CN + C, AKI = CSCA
SKI) and §4 (kid).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
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
    csca: x509.Certificate | None,
) -> CheckedDsc:
    """Raise KeyStateError listing every way ``certificate`` is not a DSC for this key."""
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
    if csca is not None:
        problems.extend(_chain_problems(certificate, csca))
    facts: DscFacts | None = None
    try:
        facts = DscFacts.from_der(certificate.public_bytes(serialization.Encoding.DER))
    except ValueError as e:
        problems.append(str(e))
    if problems or facts is None:
        raise KeyStateError("certificate refused: " + "; ".join(problems))
    return CheckedDsc(facts, tuple(warnings))


def _chain_problems(certificate: x509.Certificate, csca: x509.Certificate) -> list[str]:
    problems: list[str] = []
    try:
        certificate.verify_directly_issued_by(csca)
    except (ValueError, TypeError, InvalidSignature) as e:
        problems.append(f"not issued by the given CSCA ({type(e).__name__}: {e})")
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = csca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        if aki.key_identifier != ski.digest:
            problems.append("its authorityKeyIdentifier is not the CSCA's subjectKeyIdentifier")
    except x509.ExtensionNotFound as e:
        problems.append(f"AKI/SKI missing: {e} (HCERT.md §7: AKI MUST equal the CSCA's SKI)")
    return problems


def _names(types: frozenset[CertType]) -> str:
    return ",".join(sorted(t.value for t in types)) or "nothing"
