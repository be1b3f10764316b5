"""Which certificate types a DSC may sign, as the reference verifiers read its EKU (HCERT.md §7).

Optional extendedKeyUsage OIDs restrict a DSC to test, vaccination or recovery certificates; a
verifier SHALL check the DCC's type against them (HS App. A.4). Like the reference verifiers
(HK ``trust/ContentType.kt``, AND ``services/X509.kt``) this also reads the mistyped
``1.3.6.1.4.1.0.1847.2021.1.x`` variants, which most test DSCs carry, and lets a DSC whose EKU
holds no DCC OID at all sign every type. The issuer side (:mod:`signer.keys.dsc`) writes and
reads only the official OIDs.
"""

from __future__ import annotations

from collections.abc import Iterable

from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from signer.domain import CertType

_OFFICIAL = "1.3.6.1.4.1.1847.2021.1."
_MISTYPED = "1.3.6.1.4.1.0.1847.2021.1."
_SUFFIX = {"1": CertType.TEST, "2": CertType.VACCINATION, "3": CertType.RECOVERY}

#: EKU OID → the certificate type it allows, official and mistyped spellings alike.
DCC_EKU_TYPES: dict[str, CertType] = {
    prefix + suffix: cert_type
    for prefix in (_OFFICIAL, _MISTYPED)
    for suffix, cert_type in _SUFFIX.items()
}


def dcc_types(certificate: x509.Certificate) -> frozenset[CertType]:
    """The types ``certificate`` may sign; empty when its EKU cannot be read at all.

    ``cryptography`` refuses a whole extension block for one flaw that the reference verifiers
    tolerate (an EKU with no OID, vector CO15 "no OID present"; a DEFAULT value encoded in
    BasicConstraints, the FI test DSCs), so the EKU is then read with the lenient asn1crypto
    (a dependency of python-pkcs11). What neither can read fails closed.
    """
    try:
        extension = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return frozenset(CertType)
    except ValueError:
        oids = _lenient_eku(certificate)
        return frozenset() if oids is None else _types(oids)
    return _types(oid.dotted_string for oid in extension.value)


def _types(oids: Iterable[str]) -> frozenset[CertType]:
    """No DCC OID among the EKU's OIDs (or no OID at all) allows every type (HS App. A.4)."""
    types = frozenset(DCC_EKU_TYPES[oid] for oid in oids if oid in DCC_EKU_TYPES)
    return types or frozenset(CertType)


def _lenient_eku(certificate: x509.Certificate) -> list[str] | None:
    """The EKU's OIDs as asn1crypto reads them, [] without an EKU, None when unreadable."""
    try:
        der = certificate.public_bytes(serialization.Encoding.DER)
        parsed = asn1_x509.Certificate.load(der)
        for extension in parsed["tbs_certificate"]["extensions"]:
            if extension["extn_id"].dotted == "2.5.29.37":
                return [str(oid.dotted) for oid in extension["extn_value"].parsed]
    except Exception:  # asn1crypto raises ValueError, TypeError & co. on broken DER
        return None
    return []


def dsc_country(certificate: x509.Certificate) -> str | None:
    """The subject's C (country using the DSC, HCERT.md §7), or None when there is not one."""
    try:
        countries = certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    except ValueError:
        return None
    values = {str(attribute.value).upper() for attribute in countries}
    return values.pop() if len(values) == 1 else None
