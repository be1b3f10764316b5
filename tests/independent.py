"""Independent verification: nothing from ``signer`` is used here.

An HC1 string is taken apart with the PyPI ``base45`` package and ``zlib``, and its signature is
checked by pycose (its own Sig_structure and crypto), so a bug shared by our encoder and our
decoder cannot hide (non-negotiable 2).
"""

from __future__ import annotations

import zlib
from typing import Any

import base45 as pypi_base45
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pycose.keys.cosekey import CoseKey
from pycose.messages.sign1message import Sign1Message


def cose_bytes(hc1: str) -> bytes:
    assert hc1.startswith("HC1:"), hc1[:8]
    return zlib.decompress(pypi_base45.b45decode(hc1[4:]))


def untag(cose: bytes) -> bytes:
    """Drop a leading tag 18 (0xD2) so cbor2 hands back a plain array."""
    return cose[1:] if cose[:1] == b"\xd2" else cose


def pycose_verifies(cose: bytes, certificate: x509.Certificate) -> bool:
    """pycose's verdict on COSE_Sign1 bytes with the DSC's public key.

    pycose 1.1's ``Sign1Message.decode`` fails under cbor2 6 (a tag's content decodes as a tuple),
    so the untagged array goes to ``from_cose_obj``; Sig_structure and the signature check stay
    pycose's own.
    """
    message = Sign1Message.from_cose_obj(list(cbor2.loads(untag(cose))), True)
    pem = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    message.key = CoseKey.from_pem_public_key(pem.decode())
    try:
        return bool(message.verify_signature())
    except Exception:  # pycose raises on some malformed signatures instead of returning False
        return False


def hc1_verifies(hc1: str, certificate: x509.Certificate) -> bool:
    return pycose_verifies(cose_bytes(hc1), certificate)


def hc1_claims(hc1: str) -> dict[Any, Any]:
    """The CWT claims map, decoded with cbor2 alone."""
    array = cbor2.loads(untag(cose_bytes(hc1)))
    claims = cbor2.loads(array[2])
    assert isinstance(claims, dict)
    return claims
