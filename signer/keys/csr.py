"""PKCS#10 certificate requests (RFC 2986) signed inside the HSM.

``cryptography`` builds CSRs only with a private key it holds, and a DSC key never leaves the
token, so the CertificationRequestInfo is assembled here with a few DER primitives, its SHA-256
is signed in the HSM (ES256: ecdsa-with-SHA256, raw r‖s turned into DER; PS256 keys:
RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt, RFC 4055 — the one mechanism a DSC
key may use, issue 8 §9; OpenSSL and ``cryptography`` CAs accept such requests), and the result
is checked with ``cryptography`` before it is handed out.
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from hsm import KeyAlgorithm, SigningKey

_ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
_RSASSA_PSS = "1.2.840.113549.1.1.10"
_MGF1 = "1.2.840.113549.1.1.8"
_SHA256 = "2.16.840.1.101.3.4.2.1"

#: RFC 4514 short names accepted in ``--subject``.
SUBJECT_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
}


# -- DER -----------------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def sequence(*members: bytes) -> bytes:
    return tlv(0x30, b"".join(members))


def integer(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return tlv(0x02, body)


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        rest = arc >> 7
        chunk = [arc & 0x7F]
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def bit_string(data: bytes) -> bytes:
    return tlv(0x03, b"\x00" + data)  # no unused bits


NULL = b"\x05\x00"
EMPTY_ATTRIBUTES = tlv(0xA0, b"")  # [0] IMPLICIT SET OF Attribute, empty

# RFC 4055 §3.1 RSASSA-PSS-params {[0] sha256, [1] mgf1(sha256), [2] saltLength 32}; the
# trailerField keeps its default. As the signing path's PSS: HCERT.md §5.
_SHA256_ALGORITHM = sequence(oid(_SHA256), NULL)
RSASSA_PSS_SHA256 = sequence(
    oid(_RSASSA_PSS),
    sequence(
        tlv(0xA0, _SHA256_ALGORITHM),
        tlv(0xA1, sequence(oid(_MGF1), _SHA256_ALGORITHM)),
        tlv(0xA2, integer(32)),
    ),
)


# -- subject -------------------------------------------------------------------------------------


def parse_subject(text: str) -> x509.Name:
    """``"CN=…,O=…,C=VN"`` → Name. Commas inside a value are escaped as ``\\,`` (RFC 4514)."""
    attributes: list[x509.NameAttribute[str]] = []
    for part in re.split(r"(?<!\\),", text):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().upper()
        value = value.strip().replace("\\,", ",")
        if not sep or key not in SUBJECT_ATTRIBUTES or not value:
            raise ValueError(
                f"subject part {part.strip()!r}: use KEY=value with KEY one of "
                f"{', '.join(SUBJECT_ATTRIBUTES)}, e.g. 'CN=VN DSC 2025-1,O=Ministry,C=VN'"
            )
        if key == "C" and not re.fullmatch(r"[A-Z]{2}", value):
            raise ValueError(f"C={value!r}: the country is an ISO 3166-1 alpha-2 code, e.g. VN")
        attributes.append(x509.NameAttribute(SUBJECT_ATTRIBUTES[key], value))
    name = x509.Name(attributes)
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME) or not name.get_attributes_for_oid(
        NameOID.COUNTRY_NAME
    ):
        raise ValueError("a DSC subject needs CN and C (HCERT.md §7)")
    return name


# -- request -------------------------------------------------------------------------------------


def build_csr(key: SigningKey, public_key_der: bytes, subject: x509.Name) -> bytes:
    """A DER PKCS#10 request for ``key``, signed in the HSM; raises ValueError if it does not
    verify (a key / public-key mix-up)."""
    spki = serialization.load_der_public_key(public_key_der).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = sequence(integer(0), subject.public_bytes(), spki, EMPTY_ATTRIBUTES)
    digest = hashlib.sha256(info).digest()
    if key.algorithm is KeyAlgorithm.EC_P256:
        raw = key.sign_digest(digest)
        half = len(raw) // 2
        signature = encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )
        algorithm = sequence(oid(_ECDSA_WITH_SHA256))
    else:
        signature = key.sign_digest(digest)  # CKM_RSA_PKCS_PSS, SHA-256, MGF1-SHA-256, salt 32
        algorithm = RSASSA_PSS_SHA256
    der = sequence(info, algorithm, bit_string(signature))
    if not x509.load_der_x509_csr(der).is_signature_valid:
        raise ValueError("the CSR signed in the HSM does not verify with the token's public key")
    return der
