"""Which key signs: the registry on a real SoftHSM token with dev-CA certificates, state records
approved by two test officers (dual control is enforced as in the server)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from hsm import HsmToken, KeyAlgorithm
from signer.domain import Alg, CertType
from signer.keys.devca import DevCsca, create_dev_key, write_dev_state
from signer.keys.registry import KeyRegistry, NoKey
from signer.keys.state import KeyState
from tests.unit.keys.conftest import Officers

NOW = dt.datetime.now(dt.UTC)
DAY = 86400


def _now() -> int:
    return int(time.time())


def _registry(token: HsmToken, officers: Officers, csca: DevCsca) -> KeyRegistry:
    registry = KeyRegistry(token, officers.policy, (csca.certificate,))
    registry.refresh(time.time())
    return registry


def _entry(registry: KeyRegistry, label: str):  # type: ignore[no-untyped-def]
    return next(e for e in registry.entries if e.label == label)


def test_active_key_signs_its_types_only(
    hsm_token: HsmToken, dev_csca: DevCsca, officers: Officers
) -> None:
    create_dev_key(
        hsm_token,
        dev_csca,
        Alg.ES256,
        "reg-test-only",
        "VN",
        types=[CertType.TEST],
        officers=officers.pair,
    )
    registry = _registry(hsm_token, officers, dev_csca)
    entry = _entry(registry, "reg-test-only")
    assert entry.state is KeyState.ACTIVE and entry.problem is None
    assert entry.dsc.types == frozenset({CertType.TEST})
    assert registry.select(CertType.TEST, Alg.ES256, _now(), _now() + DAY)
    assert not any(
        a.entry.label == "reg-test-only"
        for a in registry._active
        if CertType.VACCINATION in a.entry.dsc.types
    )


def test_pending_and_scheduled_keys_do_not_sign(
    hsm_token: HsmToken, dev_csca: DevCsca, officers: Officers
) -> None:
    create_dev_key(
        hsm_token, dev_csca, Alg.ES256, "reg-pending", "VN",
        types=[CertType.RECOVERY], state=KeyState.PENDING, officers=officers.pair,
    )  # fmt: skip
    registry = _registry(hsm_token, officers, dev_csca)
    assert _entry(registry, "reg-pending").state is KeyState.PENDING
    with pytest.raises(NoKey) as no_key:
        registry.select(CertType.RECOVERY, Alg.ES256, _now(), _now() + DAY)
    assert no_key.value.code == "no_key"

    # Scheduled: active from one hour ahead — pending now, active once the time has come.
    later = _now() + 3600
    key = hsm_token.find_key("reg-pending")
    assert key is not None
    der = next(c.der for c in hsm_token.certificates() if c.key_id == key.key_id)
    write_dev_state(
        hsm_token, "reg-pending", key.key_id, Alg.ES256, der, KeyState.ACTIVE, later,
        officers.pair,
    )  # fmt: skip
    registry.refresh(time.time())
    assert _entry(registry, "reg-pending").state is KeyState.PENDING
    registry.refresh(later + 1)
    assert _entry(registry, "reg-pending").state is KeyState.ACTIVE
    chosen = registry.select(CertType.RECOVERY, Alg.ES256, later + 1, later + DAY)
    assert chosen.entry.label == "reg-pending"


def test_key_certificate_mix_up_fails_the_self_test(
    hsm_token: HsmToken, dev_csca: DevCsca, officers: Officers
) -> None:
    """A DSC stored against the wrong key: the self-test catches it before anything is signed."""
    other = create_dev_key(
        hsm_token, dev_csca, Alg.ES256, "reg-other", "VN", officers=officers.pair
    )
    key_id = secrets.token_bytes(16)
    hsm_token.generate_key(KeyAlgorithm.EC_P256, "reg-mixup", key_id)
    der = other.public_bytes(serialization.Encoding.DER)
    hsm_token.store_certificate("reg-mixup", key_id, der, b"\x30\x00")
    write_dev_state(
        hsm_token, "reg-mixup", key_id, Alg.ES256, der, KeyState.ACTIVE, 0, officers.pair
    )
    registry = _registry(hsm_token, officers, dev_csca)
    mixup = _entry(registry, "reg-mixup")
    assert mixup.problem is not None and "self-test" in mixup.problem


def test_certificate_outliving_its_dsc_is_refused(
    hsm_token: HsmToken, dev_csca: DevCsca, officers: Officers
) -> None:
    create_dev_key(
        hsm_token, dev_csca, Alg.PS256, "reg-short", "VN",
        not_after=NOW + dt.timedelta(days=10), types=[CertType.VACCINATION], officers=officers.pair,
    )  # fmt: skip
    registry = _registry(hsm_token, officers, dev_csca)
    assert registry.select(CertType.VACCINATION, Alg.PS256, _now(), _now() + 5 * DAY)
    with pytest.raises(NoKey) as refused:
        registry.select(CertType.VACCINATION, Alg.PS256, _now(), _now() + 365 * DAY)
    assert refused.value.code == "dsc_validity"
    assert "expires" in str(refused.value)


def test_dsc_not_yet_valid_is_refused(
    hsm_token: HsmToken, dev_csca: DevCsca, officers: Officers
) -> None:
    start = NOW + dt.timedelta(days=3)
    create_dev_key(
        hsm_token, dev_csca, Alg.PS256, "reg-future", "VN",
        not_before=start, not_after=start + dt.timedelta(days=700), types=[CertType.RECOVERY],
        officers=officers.pair,
    )  # fmt: skip
    registry = _registry(hsm_token, officers, dev_csca)
    with pytest.raises(NoKey) as refused:
        registry.select(CertType.RECOVERY, Alg.PS256, _now(), _now() + DAY)
    assert refused.value.code == "dsc_not_yet_valid"


def test_es256_is_preferred_when_no_alg_is_requested(
    hsm_token: HsmToken, dev_csca: DevCsca, officers: Officers
) -> None:
    create_dev_key(
        hsm_token,
        dev_csca,
        Alg.ES256,
        "reg-pref-es",
        "VN",
        types=[CertType.TEST],
        officers=officers.pair,
    )
    create_dev_key(
        hsm_token,
        dev_csca,
        Alg.PS256,
        "reg-pref-ps",
        "VN",
        types=[CertType.TEST],
        officers=officers.pair,
    )
    registry = _registry(hsm_token, officers, dev_csca)
    chosen = registry.select(CertType.TEST, None, _now(), _now() + DAY)
    assert chosen.entry.dsc.alg is Alg.ES256
    assert (
        registry.select(CertType.TEST, Alg.PS256, _now(), _now() + DAY).entry.dsc.alg is Alg.PS256
    )
    assert registry.serving(time.time())


def test_dev_bootstrap_approves_a_dev_key_left_without_a_record(
    hsm_token: HsmToken, dev_csca: DevCsca, tmp_path: Path
) -> None:
    """A dev token from before dual control (v1 records) gets records signed by the dev officers."""
    from signer.keys.devca import dev_officers, ensure_dev_keys
    from signer.keys.officers import ApprovalPolicy
    from signer.keys.roster import newest_roster

    key_id = secrets.token_bytes(16)
    hsm_token.generate_key(KeyAlgorithm.EC_P256, "dev-dsc-es256", key_id)
    certificate = dev_csca.issue_dsc(
        hsm_token.public_key_der(key_id), "dev", "VN", NOW - dt.timedelta(hours=1),
        NOW + dt.timedelta(days=30), [CertType.TEST],
    )  # fmt: skip
    der = certificate.public_bytes(serialization.Encoding.DER)
    hsm_token.store_certificate("dev-dsc-es256", key_id, der, b"\x30\x00")
    hsm_token.put_data("hcert-signer/key-state/v1", "dev-dsc-es256", b'{"state": "active"}')
    officers_dir = tmp_path / "officers"
    lines: list[str] = []
    ensure_dev_keys(hsm_token, tmp_path, "VN", [Alg.ES256], lines.append, officers_dir)
    assert any("approving dev key" in line for line in lines)
    pin = tmp_path / "roster.sha256"
    assert len(dev_officers(officers_dir, pin, create=False)) == 2
    policy = ApprovalPolicy(newest_roster(officers_dir, pin.read_text().strip())[0], 2)
    registry = KeyRegistry(hsm_token, policy, (dev_csca.certificate,))
    registry.refresh(time.time())
    assert _entry(registry, "dev-dsc-es256").state is KeyState.ACTIVE


def test_outside_key_period_names_iat_outside_the_dsc_or_after_retirement(
    hsm_token: HsmToken, dev_csca: DevCsca, officers: Officers
) -> None:
    """Reissue's hc1_outside_key_period: an original this appliance cannot have signed."""
    create_dev_key(hsm_token, dev_csca, Alg.ES256, "reg-period", "VN", officers=officers.pair)
    key = hsm_token.find_key("reg-period")
    assert key is not None
    der = next(c.der for c in hsm_token.certificates() if c.key_id == key.key_id)
    retire_at = _now() + 5
    write_dev_state(
        hsm_token, "reg-period", key.key_id, Alg.ES256, der, KeyState.RETIRED, retire_at,
        officers.pair,
    )  # fmt: skip
    registry = _registry(hsm_token, officers, dev_csca)
    registry.refresh(retire_at + 5)
    entry = _entry(registry, "reg-period")
    assert entry.state is KeyState.RETIRED
    certificate = entry.dsc.certificate

    assert registry.outside_key_period(certificate, retire_at - 1) is None
    after = registry.outside_key_period(certificate, retire_at)
    assert after is not None and "retired" in after and "reg-period" in after
    before = registry.outside_key_period(certificate, entry.dsc.not_before - 1)
    assert before is not None and "outside its DSC's validity" in before
    beyond = registry.outside_key_period(certificate, entry.dsc.not_after + 1)
    assert beyond is not None and "outside its DSC's validity" in beyond
    assert "no iat" in (registry.outside_key_period(certificate, None) or "")
    assert "no longer in the token" in (registry.outside_key_period(None, retire_at - 1) or "")


def test_an_approved_dsc_of_another_ca_is_never_listed_or_selected(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 8: both officers approved it, but no configured CSCA issued its DSC."""
    rogue_ca = DevCsca.load_or_create(tmp_path / "rogue-ca", "VN")
    rogue = create_dev_key(
        hsm_token, rogue_ca, Alg.ES256, "reg-rogue", "VN",
        types=[CertType.RECOVERY], officers=officers.pair,
    )  # fmt: skip
    registry = _registry(hsm_token, officers, dev_csca)
    assert "reg-rogue" not in {e.label for e in registry.entries}
    rogue_der = rogue.public_bytes(serialization.Encoding.DER)
    assert registry.trust.lookup(hashlib.sha256(rogue_der).digest()[:8]) == ()
    assert "reg-rogue" not in {a.entry.label for a in registry._active}
    assert "key 'reg-rogue': DSC not listed: it does not chain to a configured CSCA" in caplog.text

    # The control: a registry trusting that CA serves the very same key.
    trusting = KeyRegistry(hsm_token, officers.policy, (dev_csca.certificate, rogue_ca.certificate))
    trusting.refresh(time.time())
    assert "reg-rogue" in {a.entry.label for a in trusting._active}
