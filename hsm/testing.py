"""Test-only: keys the appliance itself never makes. Not imported by ``signer``.

:func:`generate_legacy_key` makes a key pair with the production template except for its
``CKA_ALLOWED_MECHANISMS`` — left out (a key generated before issue 8 §9) or set to a given
list — so tests can show that the checks refuse it. There is no production flag for this.
"""

from __future__ import annotations

from collections.abc import Iterable

from pkcs11 import Attribute

from hsm._keys import KeyAlgorithm, SigningKey, generate_with_template, private_template
from hsm._token import HsmToken


def generate_legacy_key(
    token: HsmToken,
    algorithm: KeyAlgorithm,
    label: str,
    key_id: bytes,
    allowed_mechanisms: Iterable[int] | None = None,
) -> SigningKey:
    """A sign-only, sensitive, never-extractable key pair whose mechanisms are not restricted
    (``allowed_mechanisms`` None) or restricted to ``allowed_mechanisms``."""
    template = private_template(algorithm)
    if allowed_mechanisms is None:
        del template[Attribute.ALLOWED_MECHANISMS]
    else:
        template[Attribute.ALLOWED_MECHANISMS] = list(allowed_mechanisms)
    _, private = generate_with_template(token._session, algorithm, label, key_id, template)
    return SigningKey(label=label, key_id=key_id, algorithm=algorithm, handle=private)
