"""Independent verification: nothing from ``signer`` is used here.

An HC1 string is taken apart with the PyPI ``base45`` package and ``zlib``, and its signature is
checked by pycose (its own Sig_structure and crypto), so a bug shared by our encoder and our
decoder cannot hide (non-negotiable 2).

A verdict is only a verdict when pycose actually checked the signature: ``True`` (verified) or
``False`` (pycose ran the check and the signature does not hold). When pycose cannot run the
check at all (an alg it does not know, a key that does not fit the alg, a message it cannot
parse) :class:`PycoseDidNotCheck` is raised, so that "pycose rejects this" cannot pass on an
exception that has nothing to do with the signature (issue 10 §5).
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


class PycoseDidNotCheck(Exception):  # noqa: N818 - it is an outcome, not a fault of the caller
    """pycose could not run its signature check, so it has no verdict."""


def cose_bytes(hc1: str) -> bytes:
    assert hc1.startswith("HC1:"), hc1[:8]
    return zlib.decompress(pypi_base45.b45decode(hc1[4:]))


def untag(cose: bytes) -> bytes:
    """Drop a leading CWT tag 61 (``D8 3D``) and COSE tag 18 (``D2``): a plain array for cbor2."""
    if cose[:2] == b"\xd8\x3d":
        cose = cose[2:]
    return cose[1:] if cose[:1] == b"\xd2" else cose


def pycose_verifies(cose: bytes, certificate: x509.Certificate) -> bool:
    """pycose's verdict on COSE_Sign1 bytes with the DSC's public key.

    pycose returns False itself for a signature that does not verify (cryptography's
    ``InvalidSignature``, ecdsa's ``BadSignatureError``, malformed encodings included); every
    exception means it never got that far, and is raised as :class:`PycoseDidNotCheck`.

    pycose 1.1's ``Sign1Message.decode`` fails under cbor2 6 (a tag's content decodes as a tuple),
    so the untagged array goes to ``from_cose_obj``; Sig_structure and the signature check stay
    pycose's own.
    """
    try:
        message = Sign1Message.from_cose_obj(list(cbor2.loads(untag(cose))), True)
        pem = certificate.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        message.key = CoseKey.from_pem_public_key(pem.decode())
        verdict = message.verify_signature()
    except Exception as e:
        raise PycoseDidNotCheck(f"pycose could not check: {type(e).__name__}: {e}") from e
    return bool(verdict)


def hc1_verifies(hc1: str, certificate: x509.Certificate) -> bool:
    return pycose_verifies(cose_bytes(hc1), certificate)


def hc1_claims(hc1: str) -> dict[Any, Any]:
    """The CWT claims map, decoded with cbor2 alone."""
    array = cbor2.loads(untag(cose_bytes(hc1)))
    claims = cbor2.loads(array[2])
    assert isinstance(claims, dict)
    return claims
