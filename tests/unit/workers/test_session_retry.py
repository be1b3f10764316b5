"""A worker's HSM call is tried once more on a new session when the session was lost or the
module failed transiently (issue 9 §3, §4), on a real SoftHSM token."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import exceptions as ex

from hsm import HsmError, HsmToken, KeyAlgorithm
from signer.workers.process import on_new_session_once

DIGEST = hashlib.sha256(b"retried").digest()


class Reopener:
    """Counts the new sessions it opens on the real token."""

    def __init__(self, token: HsmToken) -> None:
        self.token = token
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        self.token.reopen()


def _sign_with(token: HsmToken, label: str) -> bytes:
    """Signs on the token's current session: the key is found again, as the worker's registry
    does after a new session (handles belong to their session)."""
    key = token.find_key(label)
    assert key is not None
    return key.sign_digest(DIGEST)


@pytest.fixture
def label(hsm_token: HsmToken, request: pytest.FixtureRequest) -> str:
    name = f"retry-{request.node.name}"[:60]
    hsm_token.generate_key(KeyAlgorithm.EC_P256, name, name.encode())
    return name


def test_a_lost_session_is_reopened_and_the_call_made_once_more(
    hsm_token: HsmToken, label: str
) -> None:
    key = hsm_token.find_key(label)
    assert key is not None
    hsm_token.close()  # a network HSM's fail-over: the handle now answers SESSION_HANDLE_INVALID
    reopen = Reopener(hsm_token)
    calls: list[int] = []

    def sign() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            return key.sign_digest(DIGEST)  # the stale handle, on the closed session
        return _sign_with(hsm_token, label)

    try:
        signature = on_new_session_once(sign, reopen)
    finally:
        if reopen.count == 0:
            hsm_token.reopen()  # the other tests share this token's session
    assert reopen.count == 1 and len(calls) == 2
    _verify(hsm_token, label, signature)


def test_function_failed_is_tried_once_more_on_a_new_session(
    hsm_token: HsmToken, label: str
) -> None:
    """SoftHSM answered CKR_FUNCTION_FAILED to a worker's read while another process rewrote the
    token (seen in a ten-run series); PKCS#11 calls that code worth trying again."""
    reopen = Reopener(hsm_token)
    answers = iter([HsmError.of("reading the keys", ex.FunctionFailed())])

    def sign() -> bytes:
        failure = next(answers, None)
        if failure is not None:
            raise failure
        return _sign_with(hsm_token, label)

    signature = on_new_session_once(sign, reopen)
    assert reopen.count == 1
    _verify(hsm_token, label, signature)


def test_the_same_failure_twice_is_raised_as_the_devices(hsm_token: HsmToken, label: str) -> None:
    reopen = Reopener(hsm_token)

    def fail() -> bytes:
        raise HsmError.of("signing", ex.FunctionFailed())

    with pytest.raises(HsmError) as raised:
        on_new_session_once(fail, reopen)
    assert reopen.count == 1
    assert raised.value.code == "CKR_FUNCTION_FAILED" and raised.value.scope == "device"
    assert _sign_with(hsm_token, label)  # the new session it opened still works


@pytest.mark.parametrize(
    "error", [ex.DeviceRemoved(), ex.GeneralError(), ex.MechanismInvalid(), ex.PinIncorrect()]
)
def test_other_failures_are_raised_without_a_new_session(
    hsm_token: HsmToken, error: Exception
) -> None:
    reopen = Reopener(hsm_token)

    def fail() -> bytes:
        raise HsmError.of("signing", error)

    with pytest.raises(HsmError):
        on_new_session_once(fail, reopen)
    assert reopen.count == 0


def _verify(token: HsmToken, label: str, signature: bytes) -> None:
    """Checked with the public key read from the token, by ``cryptography`` (not hsm/)."""
    key = token.find_key(label)
    assert key is not None
    public = serialization.load_der_public_key(token.public_key_der(key.key_id))
    assert isinstance(public, ec.EllipticCurvePublicKey)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    public.verify(encode_dss_signature(r, s), DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))
    with pytest.raises(InvalidSignature):
        public.verify(encode_dss_signature(r, s + 1), DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))
