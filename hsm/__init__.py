"""Everything that talks PKCS#11: the only package that imports ``pkcs11``.

A process opens one :class:`HsmToken` after it has started (never before a fork) and calls it
from exactly one thread: python-pkcs11 0.10.1 initialises the module without locking flags and
releases the GIL, so two threads in one process crash SoftHSM (STYLE.md "Concurrency").
"""

from __future__ import annotations

from hsm._errors import HsmError, HsmLoginError, WeakKeyError
from hsm._keys import KeyAlgorithm, SigningKey, check_private_key_attributes
from hsm._softhsm import SoftHsm, find_softhsm_module
from hsm._token import AUDIT_LABEL, HsmToken, StoredCertificate, StoredData

__all__ = [
    "AUDIT_LABEL",
    "HsmError",
    "HsmLoginError",
    "HsmToken",
    "KeyAlgorithm",
    "SigningKey",
    "SoftHsm",
    "StoredCertificate",
    "StoredData",
    "WeakKeyError",
    "check_private_key_attributes",
    "find_softhsm_module",
]
