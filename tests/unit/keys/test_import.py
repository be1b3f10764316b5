"""``import-cert`` checks a DSC against the HSM key, the declared types, the country, its validity
and the CSCA before any officer's signature is stored (issue 4 §1, HCERT.md §7)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hsm import HsmToken
from signer.domain import Alg, CertType
from signer.errors import KeyStateError
from signer.keys.devca import DevCsca
from signer.keys.lifecycle import KeyManager
from signer.keys.proposals import load_proposals
from signer.keys.registry import KeyRegistry
from signer.keys.state import KeyState
from tests.unit.keys.conftest import Officers, unique

NOW = dt.datetime.now(dt.UTC)
TYPES = frozenset({CertType.VACCINATION, CertType.TEST})


def _b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.PEM)).decode()


def _dsc(
    token: HsmToken,
    csca: DevCsca,
    key_id: bytes,
    *,
    country: str = "VN",
    types: frozenset[CertType] = TYPES,
    not_before: dt.datetime = NOW - dt.timedelta(hours=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=730),
) -> x509.Certificate:
    return csca.issue_dsc(
        token.public_key_der(key_id), "VN DSC test", country, not_before, not_after, types
    )


@pytest.fixture
def other_csca(tmp_path: Path) -> DevCsca:
    return DevCsca.load_or_create(tmp_path / "other-csca", "VN")


CASES: dict[str, tuple[str, Callable[..., x509.Certificate]]] = {
    "wrong key": (
        "not the HSM key",
        lambda t, c, k, other, other_key: _dsc(t, c, other_key),
    ),
    "wrong EKU": (
        "extended key usage allows recovery",
        lambda t, c, k, other, other_key: _dsc(t, c, k, types=frozenset({CertType.RECOVERY})),
    ),
    "expired": (
        "expired on",
        lambda t, c, k, other, other_key: _dsc(
            t, c, k, not_before=NOW - dt.timedelta(days=800), not_after=NOW - dt.timedelta(days=1)
        ),
    ),
    "wrong country": (
        "subject country is ['DE']",
        lambda t, c, k, other, other_key: _dsc(t, c, k, country="DE"),
    ),
    "wrong CSCA": (
        "not issued by CSCA",
        lambda t, c, k, other, other_key: _dsc(t, other, k),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_certificates_are_refused_with_the_reason(
    case: str,
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    other_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    manager = make_manager()
    label = unique("imp-bad")
    key_id = manager.generate(label, Alg.ES256, TYPES).key_id
    other_key = manager.generate(unique("imp-other"), Alg.ES256, TYPES).key_id
    message, make = CASES[case]
    certificate = make(hsm_token, dev_csca, key_id, other_csca, other_key)
    params = {"certificate": _b64(certificate), "csca": _b64(dev_csca.certificate)}
    with pytest.raises(KeyStateError, match="certificate refused") as refused:
        manager.propose("import", label, params, officers.a)
    assert message in str(refused.value)
    assert not [p for p in load_proposals(hsm_token) if p.label == label]
    audit = list(manager._events.entries())
    assert audit[-1]["outcome"] == "refused" and audit[-1]["label"] == label


def test_good_certificate_is_stored_after_the_second_approval(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    manager = make_manager()
    label = unique("imp-good")
    key_id = manager.generate(label, Alg.ES256, TYPES).key_id
    certificate = _dsc(hsm_token, dev_csca, key_id)
    params = {"certificate": _b64(certificate), "csca": _b64(dev_csca.certificate)}
    proposed = manager.propose("import", label, params, officers.a)
    assert not proposed.executed
    assert not [c for c in hsm_token.certificates() if c.key_id == key_id]  # not yet

    done = manager.approve(proposed.proposal.id, officers.b)
    assert done.executed and done.approvers == ("alice", "bob")
    stored = [c for c in hsm_token.certificates() if c.key_id == key_id]
    assert [c.der for c in stored] == [certificate.public_bytes(serialization.Encoding.DER)]

    registry = KeyRegistry(hsm_token, officers.policy, (dev_csca.certificate,))
    registry.refresh(NOW.timestamp())
    (entry,) = [e for e in registry.entries if e.label == label]
    assert entry.state is KeyState.PENDING and entry.dsc.types == TYPES
