"""The self-test a key passes before it may sign: run when an officer activates it and again by
every server before its first certificate (issue 4 §4, issue 2 §5)."""

from __future__ import annotations

import hashlib
import os

from hsm import KeyAlgorithm, SigningKey, check_private_key_attributes
from signer.domain import Alg
from signer.hcert.verify import signature_matches
from signer.keys.dsc import DscFacts

KEY_ALGS = {KeyAlgorithm.EC_P256: Alg.ES256, KeyAlgorithm.RSA_2048: Alg.PS256}


def self_test(
    key: SigningKey, dsc: DscFacts, *, allow_unrestricted: bool = False
) -> tuple[str, ...]:
    """Raise unless the key is sign-only, sensitive, never extractable and restricted to the
    signing mechanism (``WeakKeyError``), fits its DSC's algorithm, and signs a fresh message in
    the HSM so that the DSC's public key verifies it (``ValueError``): this catches a
    key/certificate mix-up before anything is issued. ``HsmError`` when the HSM fails.

    ``allow_unrestricted`` (the servers, for a key already active): a key with no mechanism
    restriction at all passes with a warning, returned; activation never allows it."""
    if KEY_ALGS[key.algorithm] is not dsc.alg:
        raise ValueError(f"key is {key.algorithm.value} but its DSC is for {dsc.alg.value}")
    warnings = check_private_key_attributes(
        key.handle, key.algorithm, allow_unrestricted=allow_unrestricted
    )
    message = b"hcert-signer self-test " + os.urandom(16)
    signature = key.sign_digest(hashlib.sha256(message).digest())
    if not signature_matches(dsc.alg, dsc.certificate, signature, message):
        raise ValueError("self-test failed: the key's signature does not verify with its DSC")
    return warnings
