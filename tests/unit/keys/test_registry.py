"""Which key signs: the registry on a real SoftHSM token with dev-CA certificates."""

from __future__ import annotations

import datetime as dt
import secrets
import time

import pytest
from cryptography.hazmat.primitives import serialization

from hsm import HsmToken, KeyAlgorithm
from signer.domain import Alg, CertType
from signer.keys.devca import DevCsca, create_dev_key
from signer.keys.registry import KeyRegistry, NoKey
from signer.keys.state import STATE_APPLICATION, KeyState, KeyStateRecord

NOW = dt.datetime.now(dt.UTC)
DAY = 86400


def _now() -> int:
    return int(time.time())


def _registry(token: HsmToken) -> KeyRegistry:
    registry = KeyRegistry(token)
    registry.refresh(time.time())
    return registry


def _entry(registry: KeyRegistry, label: str):  # type: ignore[no-untyped-def]
    return next(e for e in registry.entries if e.label == label)


def test_active_key_signs_its_types_only(hsm_token: HsmToken, dev_csca: DevCsca) -> None:
    create_dev_key(hsm_token, dev_csca, Alg.ES256, "reg-test-only", "VN", types=[CertType.TEST])
    registry = _registry(hsm_token)
    entry = _entry(registry, "reg-test-only")
    assert entry.state is KeyState.ACTIVE and entry.problem is None
    assert entry.dsc.types == frozenset({CertType.TEST})
    assert registry.select(CertType.TEST, Alg.ES256, _now(), _now() + DAY)
    assert not any(
        a.entry.label == "reg-test-only"
        for a in registry._active
        if CertType.VACCINATION in a.entry.dsc.types
    )


def test_pending_and_scheduled_keys_do_not_sign(hsm_token: HsmToken, dev_csca: DevCsca) -> None:
    create_dev_key(
        hsm_token, dev_csca, Alg.ES256, "reg-pending", "VN",
        types=[CertType.RECOVERY], state=KeyState.PENDING,
    )  # fmt: skip
    registry = _registry(hsm_token)
    assert _entry(registry, "reg-pending").state is KeyState.PENDING
    with pytest.raises(NoKey) as no_key:
        registry.select(CertType.RECOVERY, Alg.ES256, _now(), _now() + DAY)
    assert no_key.value.code == "no_key"

    # Scheduled: active from one hour ahead — pending now, active once the time has come.
    later = _now() + 3600
    hsm_token.put_data(
        STATE_APPLICATION, "reg-pending", KeyStateRecord(KeyState.ACTIVE, later).to_bytes()
    )
    registry.refresh(time.time())
    assert _entry(registry, "reg-pending").state is KeyState.PENDING
    registry.refresh(later + 1)
    assert _entry(registry, "reg-pending").state is KeyState.ACTIVE
    chosen = registry.select(CertType.RECOVERY, Alg.ES256, later + 1, later + DAY)
    assert chosen.entry.label == "reg-pending"


def test_key_certificate_mix_up_fails_the_self_test(hsm_token: HsmToken, dev_csca: DevCsca) -> None:
    """A DSC stored against the wrong key: the self-test catches it before anything is signed."""
    other = create_dev_key(hsm_token, dev_csca, Alg.ES256, "reg-other", "VN")
    key_id = secrets.token_bytes(16)
    hsm_token.generate_key(KeyAlgorithm.EC_P256, "reg-mixup", key_id)
    hsm_token.store_certificate(
        "reg-mixup", key_id, other.public_bytes(serialization.Encoding.DER), b"\x30\x00"
    )
    hsm_token.put_data(
        STATE_APPLICATION, "reg-mixup", KeyStateRecord(KeyState.ACTIVE, 0).to_bytes()
    )
    registry = _registry(hsm_token)
    mixup = _entry(registry, "reg-mixup")
    assert mixup.problem is not None and "self-test" in mixup.problem


def test_certificate_outliving_its_dsc_is_refused(hsm_token: HsmToken, dev_csca: DevCsca) -> None:
    create_dev_key(
        hsm_token, dev_csca, Alg.PS256, "reg-short", "VN",
        not_after=NOW + dt.timedelta(days=10), types=[CertType.VACCINATION],
    )  # fmt: skip
    registry = _registry(hsm_token)
    assert registry.select(CertType.VACCINATION, Alg.PS256, _now(), _now() + 5 * DAY)
    with pytest.raises(NoKey) as refused:
        registry.select(CertType.VACCINATION, Alg.PS256, _now(), _now() + 365 * DAY)
    assert refused.value.code == "dsc_validity"
    assert "expires" in str(refused.value)


def test_dsc_not_yet_valid_is_refused(hsm_token: HsmToken, dev_csca: DevCsca) -> None:
    start = NOW + dt.timedelta(days=3)
    create_dev_key(
        hsm_token, dev_csca, Alg.PS256, "reg-future", "VN",
        not_before=start, not_after=start + dt.timedelta(days=700), types=[CertType.RECOVERY],
    )  # fmt: skip
    registry = _registry(hsm_token)
    with pytest.raises(NoKey) as refused:
        registry.select(CertType.RECOVERY, Alg.PS256, _now(), _now() + DAY)
    assert refused.value.code == "dsc_not_yet_valid"


def test_es256_is_preferred_when_no_alg_is_requested(
    hsm_token: HsmToken, dev_csca: DevCsca
) -> None:
    create_dev_key(hsm_token, dev_csca, Alg.ES256, "reg-pref-es", "VN", types=[CertType.TEST])
    create_dev_key(hsm_token, dev_csca, Alg.PS256, "reg-pref-ps", "VN", types=[CertType.TEST])
    registry = _registry(hsm_token)
    chosen = registry.select(CertType.TEST, None, _now(), _now() + DAY)
    assert chosen.entry.dsc.alg is Alg.ES256
    assert (
        registry.select(CertType.TEST, Alg.PS256, _now(), _now() + DAY).entry.dsc.alg is Alg.PS256
    )
    assert registry.serving(time.time())
