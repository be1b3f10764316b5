"""Errors of the HSM layer; ``signer`` maps them onto its own branches with ``raise … from``.

Every :class:`HsmError` raised over a PKCS#11 failure carries the CKR name of the return value
(``CKR_DEVICE_ERROR``, …) and what it means for the caller (:attr:`HsmError.scope`): a lost
session can be reopened on the same login, a lost device needs the library finalised and
initialised again, anything else is a fault of one operation (issue 9 §3, §4).
"""

from __future__ import annotations

import re
from typing import Literal

from pkcs11.exceptions import PKCS11Error

Scope = Literal["session", "device", "operation"]

#: Return values after which the session (not the device) is gone: reopen it, find the key
#: handles again, retry (issue 9 §3). OBJECT_HANDLE_INVALID also means "deleted by another
#: process"; a second failure after the reopen is treated as the device's.
_SESSION_CODES = frozenset(
    {
        "CKR_SESSION_HANDLE_INVALID",
        "CKR_SESSION_CLOSED",
        "CKR_OBJECT_HANDLE_INVALID",
        "CKR_KEY_HANDLE_INVALID",
        "CKR_USER_NOT_LOGGED_IN",
    }
)
#: Return values of one operation that say nothing about the connection to the token.
_OPERATION_CODES = frozenset(
    {
        "CKR_ATTRIBUTE_TYPE_INVALID",
        "CKR_ATTRIBUTE_VALUE_INVALID",
        "CKR_ATTRIBUTE_SENSITIVE",
        "CKR_ATTRIBUTE_READ_ONLY",
        "CKR_ARGUMENTS_BAD",
        "CKR_DATA_INVALID",
        "CKR_DATA_LEN_RANGE",
        "CKR_KEY_TYPE_INCONSISTENT",
        "CKR_KEY_FUNCTION_NOT_PERMITTED",
        "CKR_MECHANISM_INVALID",
        "CKR_MECHANISM_PARAM_INVALID",
        "CKR_TEMPLATE_INCOMPLETE",
        "CKR_TEMPLATE_INCONSISTENT",
        "CKR_DEVICE_MEMORY",
        "CKR_PIN_INCORRECT",
        "CKR_PIN_LEN_RANGE",
        "CKR_PIN_LOCKED",
        "CKR_PIN_EXPIRED",
    }
)
#: Return values after which PKCS#11 says trying again may work. CKR_FUNCTION_FAILED is one of
#: its universal return values (v2.40 §5.1.1): "the situation is not necessarily totally
#: hopeless, as it is likely to be when CKR_GENERAL_ERROR is returned", and the same call may
#: succeed when made again. SoftHSM answers it to a read made while another process rewrites the
#: token. Tried once more on a new session; a second one counts as the device's (its scope).
_TRANSIENT_CODES = frozenset({"CKR_FUNCTION_FAILED"})
# python-pkcs11 names its exception classes after the CKR constant, with these exceptions.
_SPELLING = {
    "FunctionCancelled": "CKR_FUNCTION_CANCELED",
    "TokenNotRecognised": "CKR_TOKEN_NOT_RECOGNIZED",
    "RandomNoRNG": "CKR_RANDOM_NO_RNG",
    "SlotIDInvalid": "CKR_SLOT_ID_INVALID",
    "AnotherUserAlreadyLoggedIn": "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
    "NoSuchToken": "NO_SUCH_TOKEN",
}


def ckr_name(error: BaseException) -> str:
    """The CKR name of a python-pkcs11 exception (a bounded set: one per exception class);
    ``CKR_UNMAPPED`` for the base class, which python-pkcs11 raises for rarer return values."""
    name = type(error).__name__
    if not isinstance(error, PKCS11Error) or name == "PKCS11Error":
        return "CKR_UNMAPPED"
    if name in _SPELLING:
        return _SPELLING[name]
    return "CKR_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


class HsmError(Exception):
    """The PKCS#11 module, token or session failed; ``code`` is the CKR name when PKCS#11
    returned an error (None for failures of our own, e.g. a missing object)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def of(cls, what: str, error: BaseException) -> HsmError:
        """``what`` failed with the python-pkcs11 ``error``: the message names the CKR code."""
        code = ckr_name(error)
        detail = str(error)
        return cls(f"{what}: {code}{f' ({detail})' if detail else ''}", code)

    @property
    def scope(self) -> Scope:
        """What failed: the session, the device (module, token, connection), or one
        operation. An unknown return value counts as the device's: reconnecting costs a
        moment, answering from a broken library would cost every later call."""
        if self.code is None or self.code in _OPERATION_CODES:
            return "operation"
        if self.code in _SESSION_CODES:
            return "session"
        return "device"

    @property
    def worth_a_new_session(self) -> bool:
        """Whether the call may work on a new session of the same login: the session was
        lost, or the module failed in a way PKCS#11 calls transient."""
        return self.scope == "session" or self.code in _TRANSIENT_CODES


class HsmLoginError(HsmError):
    """The token was not found or refused the PIN."""


class WeakKeyError(HsmError):
    """A private key's attributes allow more than signing, or let the key leave the token."""
