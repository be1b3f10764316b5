"""CKR names and scopes of python-pkcs11 failures (issue 9 §3, §4)."""

from __future__ import annotations

import pytest
from pkcs11 import exceptions as ex

from hsm import HsmError
from hsm._errors import ckr_name


@pytest.mark.parametrize(
    ("error", "code", "scope"),
    [
        (ex.SessionHandleInvalid(), "CKR_SESSION_HANDLE_INVALID", "session"),
        (ex.ObjectHandleInvalid(), "CKR_OBJECT_HANDLE_INVALID", "session"),
        (ex.DeviceError(), "CKR_DEVICE_ERROR", "device"),
        (ex.DeviceRemoved(), "CKR_DEVICE_REMOVED", "device"),
        (ex.TokenNotPresent(), "CKR_TOKEN_NOT_PRESENT", "device"),
        (ex.GeneralError(), "CKR_GENERAL_ERROR", "device"),
        (ex.PKCS11Error("Initialisation error"), "CKR_UNMAPPED", "device"),
        (ex.MechanismInvalid(), "CKR_MECHANISM_INVALID", "operation"),
        (ex.FunctionCancelled(), "CKR_FUNCTION_CANCELED", "device"),
        (ex.PinIncorrect(), "CKR_PIN_INCORRECT", "operation"),
        (ex.FunctionFailed(), "CKR_FUNCTION_FAILED", "device"),
    ],
)
def test_code_and_scope(error: Exception, code: str, scope: str) -> None:
    assert ckr_name(error) == code
    wrapped = HsmError.of("signing failed", error)
    assert wrapped.code == code
    assert wrapped.scope == scope
    assert code in str(wrapped)


def test_our_own_failures_have_no_code_and_concern_one_operation() -> None:
    assert HsmError("no public key").scope == "operation"
    assert ckr_name(ValueError()) == "CKR_UNMAPPED"


@pytest.mark.parametrize(
    ("error", "worth_it"),
    [
        (ex.SessionHandleInvalid(), True),
        (ex.ObjectHandleInvalid(), True),
        (ex.FunctionFailed(), True),  # PKCS#11 v2.40 §5.1.1: "not necessarily totally hopeless"
        (ex.GeneralError(), False),
        (ex.DeviceRemoved(), False),
        (ex.MechanismInvalid(), False),
    ],
)
def test_which_failures_are_worth_a_new_session(error: Exception, worth_it: bool) -> None:
    assert HsmError.of("signing failed", error).worth_a_new_session is worth_it
