"""Facts read off a document-signer certificate (DSC): kid, algorithm, certificate types.

kid = first 8 bytes of SHA-256 over the DSC DER (HCERT.md §4). Certificate types come from the
DCC extended-key-usage OIDs; a DSC with none of them may sign every type (HCERT.md §7).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signer.domain import Alg, CertType
from signer.hcert.verify import kid_of

#: HCERT.md §7: the official DCC EKU OIDs (issue 4 §1).
EKU_OIDS: dict[CertType, x509.ObjectIdentifier] = {
    CertType.TEST: x509.ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.1"),
    CertType.VACCINATION: x509.ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.2"),
    CertType.RECOVERY: x509.ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.3"),
}


def alg_of(certificate: x509.Certificate) -> Alg | None:
    """ES256 for a P-256 key, PS256 for RSA ≥ 2048 bits, None for anything HCERT forbids."""
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return Alg.ES256 if isinstance(key.curve, ec.SECP256R1) else None
    if isinstance(key, rsa.RSAPublicKey):
        return Alg.PS256 if key.key_size >= 2048 else None
    return None


def certificate_types(certificate: x509.Certificate) -> frozenset[CertType]:
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset(CertType)
    types = frozenset(t for t, oid in EKU_OIDS.items() if oid in eku)
    return types or frozenset(CertType)


@dataclass(frozen=True, slots=True)
class DscFacts:
    certificate: x509.Certificate
    der: bytes
    kid: bytes
    alg: Alg
    types: frozenset[CertType]
    not_before: int  # seconds since the epoch
    not_after: int

    @classmethod
    def from_der(cls, der: bytes) -> DscFacts:
        certificate = x509.load_der_x509_certificate(der)
        alg = alg_of(certificate)
        if alg is None:
            raise ValueError("DSC key is neither P-256 EC nor RSA ≥ 2048 (HCERT.md §5)")
        return cls(
            certificate=certificate,
            der=der,
            kid=kid_of(der),
            alg=alg,
            types=certificate_types(certificate),
            not_before=int(certificate.not_valid_before_utc.timestamp()),
            not_after=int(certificate.not_valid_after_utc.timestamp()),
        )
