"""Key generation templates, attribute checks and digest signing.

Keys are generated inside the token with an explicit template (issue 2 §5): token object,
private, sensitive, never extractable, sign only — no decrypt, unwrap, derive or wrap — and
usable with one mechanism only, the one the signing path uses (issue 8 §9,
``CKA_ALLOWED_MECHANISMS``): CKM_ECDSA for EC keys, CKM_RSA_PKCS_PSS for RSA keys, so a PIN
holder cannot make raw PKCS#1 v1.5 or other signatures with a DSC key.
Signing takes a SHA-256 digest computed in Python: SoftHSM 2.6 has no CKM_ECDSA_SHA256
(PERFORMANCE.md), and hash-then-sign lets clients send only a digest (HCERT.md §5). A PKCS#10
request is signed the same way (RSA keys: RSASSA-PSS, see ``signer/keys/csr.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag
from pkcs11.exceptions import AttributeTypeInvalid, PKCS11Error
from pkcs11.types import SignMixin
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from hsm._errors import HsmError, WeakKeyError
from hsm._mechanisms import mechanism_names

_P256_OID = "1.2.840.10045.3.1.7"  # secp256r1 / prime256v1
RSA_BITS = 2048  # HCERT.md §5: PS256 with a 2048-bit modulus


class KeyAlgorithm(StrEnum):
    """The two key kinds HCERT allows (HCERT.md §5)."""

    EC_P256 = "EC_P256"
    RSA_2048 = "RSA_2048"

    @property
    def mechanism(self) -> Mechanism:
        """The one mechanism a key of this kind signs with, and the only one it allows."""
        return Mechanism.ECDSA if self is KeyAlgorithm.EC_P256 else Mechanism.RSA_PKCS_PSS


# What a DSC private key must look like when read back (issue 2 §5): attribute → required value.
REQUIRED_PRIVATE_ATTRIBUTES: dict[Attribute, bool] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.ALWAYS_SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.NEVER_EXTRACTABLE: True,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}

_BASE_PRIVATE_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
}
_PUBLIC_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
}
_SIGN_ONLY = MechanismFlag.SIGN | MechanismFlag.VERIFY


def private_template(algorithm: KeyAlgorithm) -> dict[Attribute, Any]:
    """The private half's template: sign only, and with the signing path's mechanism only."""
    return {**_BASE_PRIVATE_TEMPLATE, Attribute.ALLOWED_MECHANISMS: [algorithm.mechanism]}


def check_private_key_attributes(
    key: pkcs11.PrivateKey, algorithm: KeyAlgorithm, *, allow_unrestricted: bool = False
) -> tuple[str, ...]:
    """Raise :class:`WeakKeyError` unless the key is sign-only, sensitive, never extractable
    and allows exactly ``algorithm.mechanism``. A key with no mechanism restriction at all (no
    or an empty CKA_ALLOWED_MECHANISMS: made before issue 8 §9) is refused too, unless
    ``allow_unrestricted``: then the problem is returned as a warning (the servers keep an
    already-active key signing; activation refuses it). A list naming any other mechanism is
    always refused."""
    problems: list[str] = []
    warnings: list[str] = []
    for attribute, wanted in REQUIRED_PRIVATE_ATTRIBUTES.items():
        try:
            actual = key[attribute]
        except PKCS11Error as e:
            _raise_unless_unreadable(e)
            # An attribute that does not apply to the key type (CKA_DERIVE on some RSA keys,
            # CKA_DECRYPT on EC keys for some modules) cannot grant that capability.
            if wanted is False:
                continue
            problems.append(f"{attribute.name} unreadable (want {wanted})")
            continue
        if bool(actual) is not wanted:
            problems.append(f"{attribute.name}={bool(actual)} (want {wanted})")
    wanted_mechanisms = frozenset({algorithm.mechanism})
    allowed = _allowed_mechanisms(key)
    if not allowed:
        unrestricted = (
            f"ALLOWED_MECHANISMS {'unset' if allowed is None else 'empty'}: any mechanism "
            f"(want exactly {mechanism_names(wanted_mechanisms)}; a key made before this "
            "restriction: generate a new key and rotate)"
        )
        (warnings if allow_unrestricted else problems).append(unrestricted)
    elif allowed != wanted_mechanisms:
        problems.append(
            f"ALLOWED_MECHANISMS={mechanism_names(allowed)} "
            f"(want exactly {mechanism_names(wanted_mechanisms)})"
        )
    if problems:
        raise WeakKeyError("private key attributes too weak: " + ", ".join(problems))
    return tuple(warnings)


def _allowed_mechanisms(key: pkcs11.PrivateKey) -> frozenset[int] | None:
    """CKA_ALLOWED_MECHANISMS, or None when the token has none for this key."""
    try:
        return frozenset(key[Attribute.ALLOWED_MECHANISMS])
    except PKCS11Error as e:
        _raise_unless_unreadable(e)
        return None


def _raise_unless_unreadable(error: PKCS11Error) -> None:
    """An attribute read that failed because the session or the device went away is the HSM's
    fault, raised as such (issue 9 §4): counted as "unreadable", it made a key that was being
    checked while the HSM died look too weak to sign, and its certificates came back
    ``no_key`` instead of UNAVAILABLE."""
    failure = HsmError.of("reading a key attribute failed", error)
    if failure.scope != "operation":
        raise failure from error


def generate_keypair(
    session: pkcs11.Session, algorithm: KeyAlgorithm, label: str, key_id: bytes
) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    """Generate a sign-only key pair inside the token; nothing private ever leaves it."""
    return generate_with_template(session, algorithm, label, key_id, private_template(algorithm))


def generate_with_template(
    session: pkcs11.Session,
    algorithm: KeyAlgorithm,
    label: str,
    key_id: bytes,
    private: dict[Attribute, Any],
) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    """:func:`generate_keypair` with a given private template (``hsm.testing`` makes keys
    from before the mechanism restriction with it)."""
    try:
        if algorithm is KeyAlgorithm.EC_P256:
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters(_P256_OID)},
                local=True,
            )
            return params.generate_keypair(
                id=key_id,
                label=label,
                store=True,
                capabilities=_SIGN_ONLY,
                public_template=_PUBLIC_TEMPLATE,
                private_template=private,
            )
        return session.generate_keypair(
            KeyType.RSA,
            RSA_BITS,
            id=key_id,
            label=label,
            store=True,
            capabilities=_SIGN_ONLY,
            public_template=_PUBLIC_TEMPLATE,
            private_template=private,
        )
    except AttributeTypeInvalid as e:
        raise HsmError(
            "key generation failed: this PKCS#11 module does not accept the key template "
            "(CKA_ALLOWED_MECHANISMS?); the appliance needs a module that restricts a key to "
            "one mechanism"
        ) from e
    except PKCS11Error as e:
        raise HsmError.of(
            "key generation failed in the token (the token may be full or read-only: free "
            "room in it, or its storage, and retry)",
            e,
        ) from e


def public_key_der(public_key: pkcs11.PublicKey) -> bytes:
    """SubjectPublicKeyInfo (EC) or PKCS#1 RSAPublicKey (RSA) DER of a token public key."""
    if public_key.key_type == KeyType.EC:
        return encode_ec_public_key(public_key)
    return encode_rsa_public_key(public_key)


#: Test-only hook run before every signature (``hsm._faults``); None in production.
BEFORE_SIGN: list[Callable[[], None]] = []


@dataclass(frozen=True, slots=True, eq=False)
class SigningKey:
    """A cached handle to a private key in the token and how to sign a SHA-256 digest with it."""

    label: str
    key_id: bytes
    algorithm: KeyAlgorithm
    handle: pkcs11.PrivateKey

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a 32-byte SHA-256 digest. ES256 comes back as raw r‖s, the COSE form."""
        signer = cast(SignMixin, self.handle)  # private keys of both kinds can sign
        for hook in BEFORE_SIGN:
            hook()
        try:
            if self.algorithm is KeyAlgorithm.EC_P256:
                return signer.sign(digest, mechanism=self.algorithm.mechanism)
            # python-pkcs11 defaults PSS to SHA-1/salt 20; HCERT needs SHA-256, MGF1-SHA-256,
            # salt 32 (HCERT.md §5).
            return signer.sign(
                digest,
                mechanism=self.algorithm.mechanism,
                mechanism_param=(Mechanism.SHA256, MGF.SHA256, 32),
            )
        except PKCS11Error as e:
            raise HsmError.of(f"signing with {self.label!r} failed", e) from e
