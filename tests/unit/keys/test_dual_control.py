"""Dual control: no single officer — nor a PIN holder writing the token directly — can import,
activate, retire or destroy a key; the server-side registry enforces it too (issue 4 §3)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization

from hsm import HsmToken, KeyAlgorithm
from hsm.testing import generate_legacy_key
from signer.domain import Alg, CertType
from signer.errors import KeyStateError
from signer.keys.devca import DevCsca
from signer.keys.lifecycle import KeyManager
from signer.keys.officers import Approval
from signer.keys.plans import current_record
from signer.keys.proposals import PROPOSAL_APPLICATION, Proposal, load_proposals
from signer.keys.registry import KeyRegistry
from signer.keys.state import STATE_APPLICATION, KeyState, KeyStateRecord
from tests.unit.keys.conftest import Clock, Officers, unique

# The keys of these tests sign TEST certificates with ES256; each test's registry sees only the
# DSCs of its own CSCA (tests/unit/keys/conftest.py), whatever other tests left in the token.
TYPES = frozenset({CertType.TEST})


def _imported(
    manager: KeyManager, token: HsmToken, csca: DevCsca, officers: Officers, days: int = 730
) -> str:
    """A generated key with an approved DSC (pending), for TEST certificates."""
    label = unique("dc")
    key_id = manager.generate(label, Alg.ES256, TYPES).key_id
    now = time.time()
    certificate = csca.issue_dsc(
        token.public_key_der(key_id),
        label,
        "VN",
        *_validity(now, days),
        TYPES,
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    proposed = manager.propose(
        "import", label, {"certificate": base64.b64encode(pem).decode()}, officers.a
    )
    assert manager.approve(proposed.proposal.id, officers.b).executed
    return label


def _validity(now: float, days: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(hours=1)
    return start, start + dt.timedelta(days=days)


def _state(
    token: HsmToken, officers: Officers, csca: DevCsca, label: str, now: float
) -> KeyState | None:
    registry = KeyRegistry(token, officers.policy, (csca.certificate,))
    registry.refresh(now)
    return next((e.state for e in registry.entries if e.label == label), None)


def _activate(manager: KeyManager, officers: Officers, label: str, at: int | None = None) -> None:
    params = {} if at is None else {"at": at}
    proposed = manager.propose("activate", label, params, officers.b)
    assert manager.approve(proposed.proposal.id, officers.c).executed


def test_the_proposer_cannot_approve_their_own_proposal(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    manager = make_manager()
    label = _imported(manager, hsm_token, dev_csca, officers)
    proposed = manager.propose("activate", label, {}, officers.a)
    with pytest.raises(KeyStateError, match="needs a different officer"):
        manager.approve(proposed.proposal.id, officers.a)
    assert _state(hsm_token, officers, dev_csca, label, time.time()) is KeyState.PENDING
    assert manager.approve(proposed.proposal.id, officers.c).executed
    assert _state(hsm_token, officers, dev_csca, label, time.time()) is KeyState.ACTIVE


def test_an_officer_outside_the_roster_can_neither_propose_nor_approve(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    manager = make_manager()
    label = _imported(manager, hsm_token, dev_csca, officers)
    with pytest.raises(KeyStateError, match="not in the roster"):
        manager.propose("activate", label, {}, officers.outsider)
    proposed = manager.propose("activate", label, {}, officers.a)
    with pytest.raises(KeyStateError, match="not in the roster"):
        manager.approve(proposed.proposal.id, officers.outsider)
    assert _state(hsm_token, officers, dev_csca, label, time.time()) is KeyState.PENDING


def _forged(record: KeyStateRecord, officers: Officers, how: str) -> KeyStateRecord:
    if how == "unsigned":
        return record
    if how == "one officer":
        return record.signed_by((officers.a,))
    if how == "one officer twice":
        return record.signed_by((officers.a, officers.a))
    if how == "officer + outsider":
        return record.signed_by((officers.a, officers.outsider))
    if how == "outsider named bob":
        forged = record.signed_by((officers.a, officers.outsider)).approvals
        return dataclasses.replace(
            record, approvals=(forged[0], Approval("bob", forged[1].signature))
        )
    if how == "approvals of other content":
        other = dataclasses.replace(record, active_from=0).signed_by(officers.pair)
        return dataclasses.replace(record, approvals=other.approvals)
    assert how == "two officers"
    return record.signed_by(officers.pair)


@pytest.mark.parametrize(
    "how",
    [
        "unsigned",
        "one officer",
        "one officer twice",
        "officer + outsider",
        "outsider named bob",
        "approvals of other content",
        "two officers",  # the control: the same write with real dual control does activate
    ],
)
def test_a_state_record_written_straight_into_the_token_needs_two_officers(
    how: str,
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    manager = make_manager()
    label = _imported(manager, hsm_token, dev_csca, officers)
    record, approved = current_record(hsm_token, label, officers.policy)
    assert record is not None and approved
    now = int(time.time())
    active = dataclasses.replace(
        record, op="activate", issued_at=now, active_from=now - 1, approvals=()
    )
    hsm_token.put_data(STATE_APPLICATION, label, _forged(active, officers, how).to_bytes())
    registry = KeyRegistry(hsm_token, officers.policy, (dev_csca.certificate,))
    registry.refresh(time.time())
    active_labels = {a.entry.label for a in registry._active}
    if how == "two officers":
        assert label in active_labels
    else:
        assert label not in active_labels
        # The forged record also unbinds the DSC: the key is not listed at all.
        assert label not in {e.label for e in registry.entries}


def test_scheduled_activation_is_pending_until_its_time(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    clock = Clock(time.time())
    manager = make_manager(clock)
    label = _imported(manager, hsm_token, dev_csca, officers)
    at = int(clock.now) + 3600
    _activate(manager, officers, label, at)
    assert _state(hsm_token, officers, dev_csca, label, clock.now) is KeyState.PENDING
    assert _state(hsm_token, officers, dev_csca, label, at - 1) is KeyState.PENDING
    assert _state(hsm_token, officers, dev_csca, label, at) is KeyState.ACTIVE
    registry = KeyRegistry(hsm_token, officers.policy, (dev_csca.certificate,))
    registry.refresh(at + 1)
    chosen = registry.select(CertType.TEST, Alg.ES256, at + 1, at + 86400)
    assert chosen.entry.since == at


def test_destroy_needs_a_retired_key_and_force_while_the_dsc_is_valid(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    manager = make_manager()
    label = _imported(manager, hsm_token, dev_csca, officers)
    _activate(manager, officers, label)
    key = hsm_token.find_key(label)
    assert key is not None

    with pytest.raises(KeyStateError, match="is active: only retired keys"):
        manager.propose("destroy", label, {"force": True, "reason": "x"}, officers.a)
    retire = manager.propose("retire", label, {}, officers.a)
    assert manager.approve(retire.proposal.id, officers.b).executed
    assert _state(hsm_token, officers, dev_csca, label, time.time()) is KeyState.RETIRED

    with pytest.raises(KeyStateError, match=r"valid until .* --force --reason"):
        manager.propose("destroy", label, {"force": False}, officers.a)
    params = {"force": True, "reason": "key compromise drill"}
    destroy = manager.propose("destroy", label, params, officers.a)
    assert hsm_token.find_key(label) is not None  # one officer alone destroyed nothing
    assert manager.approve(destroy.proposal.id, officers.b).executed

    assert hsm_token.find_key(label) is None
    assert not [c for c in hsm_token.certificates() if c.key_id == key.key_id]
    assert not [d for d in hsm_token.data_objects(STATE_APPLICATION) if d.label == label]
    executed = [e for e in manager._events.entries() if e["label"] == label][-1]
    assert executed["outcome"] == "executed" and executed["op"] == "destroy"
    assert executed["params"]["reason"] == "key compromise drill"
    assert executed["officers"] == ["alice", "bob"]


def test_a_stale_or_altered_proposal_is_refused(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    clock = Clock(time.time())
    manager = make_manager(clock)
    label = _imported(manager, hsm_token, dev_csca, officers)

    altered = manager.propose("activate", label, {}, officers.a).proposal
    tampered = dataclasses.replace(altered, params={"at": int(clock.now) - 86400})
    hsm_token.put_data(PROPOSAL_APPLICATION, altered.id, tampered.to_bytes())
    with pytest.raises(KeyStateError, match="does not verify"):
        manager.approve(altered.id, officers.b)

    clock.now += 10
    stale = manager.propose("activate", label, {}, officers.a).proposal
    clock.now += 10
    retire = manager.propose("retire", label, {}, officers.b).proposal
    assert manager.approve(retire.id, officers.c).executed
    with pytest.raises(KeyStateError, match="changed"):
        manager.approve(stale.id, officers.b)
    assert _state(hsm_token, officers, dev_csca, label, clock.now) is KeyState.RETIRED
    assert stale.id in {p.id for p in load_proposals(hsm_token)}


def test_proposal_round_trips_through_the_token() -> None:
    proposal = Proposal("abc", "retire", "k", {"at": 5}, "alice", 1, 2)
    assert Proposal.from_bytes(proposal.to_bytes()) == proposal


def test_activation_runs_the_self_test_and_refuses_a_weak_key(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    """A key that was not made by ``generate`` (here: extractable, not sensitive, derive allowed)
    gets a DSC and its approvals, yet activation refuses it before anyone can approve."""
    from pkcs11 import Attribute, KeyType, MechanismFlag
    from pkcs11.util.ec import encode_named_curve_parameters

    manager = make_manager()
    label = unique("weak")
    key_id = label.encode()
    params = hsm_token._session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters("1.2.840.10045.3.1.7")},
        local=True,
    )
    params.generate_keypair(
        store=True,
        label=label,
        id=key_id,
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY | MechanismFlag.DERIVE,
        private_template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
    )
    record = KeyStateRecord(
        label=label, key_id=key_id, alg=Alg.ES256, types=TYPES, issued_at=1, op="generate"
    )
    hsm_token.put_data(STATE_APPLICATION, label, record.to_bytes())
    pem = dev_csca.issue_dsc(
        hsm_token.public_key_der(key_id), label, "VN", *_validity(time.time(), 730), TYPES
    ).public_bytes(serialization.Encoding.PEM)
    imported = manager.propose(
        "import", label, {"certificate": base64.b64encode(pem).decode()}, officers.a
    )
    assert manager.approve(imported.proposal.id, officers.b).executed

    with pytest.raises(KeyStateError, match=r"cannot be activated.*EXTRACTABLE=True"):
        manager.propose("activate", label, {}, officers.a)
    assert _state(hsm_token, officers, dev_csca, label, time.time()) is KeyState.PENDING


def _legacy_key_with_dsc(
    token: HsmToken, csca: DevCsca, officers: Officers, make_manager: Callable[..., KeyManager]
) -> str:
    """A key made before keys were restricted to one mechanism (no CKA_ALLOWED_MECHANISMS),
    with its generate record and an approved DSC import: pending."""
    label = unique("legacy")
    key_id = label.encode()
    generate_legacy_key(token, KeyAlgorithm.EC_P256, label, key_id)
    record = KeyStateRecord(
        label=label, key_id=key_id, alg=Alg.ES256, types=TYPES, issued_at=1, op="generate"
    )
    token.put_data(STATE_APPLICATION, label, record.to_bytes())
    pem = csca.issue_dsc(
        token.public_key_der(key_id), label, "VN", *_validity(time.time(), 730), TYPES
    ).public_bytes(serialization.Encoding.PEM)
    manager = make_manager()
    imported = manager.propose(
        "import", label, {"certificate": base64.b64encode(pem).decode()}, officers.a
    )
    assert manager.approve(imported.proposal.id, officers.b).executed
    return label


def test_activation_refuses_a_key_without_the_mechanism_restriction(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
) -> None:
    label = _legacy_key_with_dsc(hsm_token, dev_csca, officers, make_manager)
    with pytest.raises(KeyStateError, match=r"cannot be activated.*ALLOWED_MECHANISMS empty"):
        make_manager().propose("activate", label, {}, officers.a)
    assert _state(hsm_token, officers, dev_csca, label, time.time()) is KeyState.PENDING


def test_a_key_active_before_the_restriction_keeps_signing_with_a_warning(
    hsm_token: HsmToken,
    dev_csca: DevCsca,
    officers: Officers,
    make_manager: Callable[..., KeyManager],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Upgrading must not take the appliance down: an already-active key made before issue 8
    §9 (activated by officers back then) still signs, and the log says to rotate it."""
    label = _legacy_key_with_dsc(hsm_token, dev_csca, officers, make_manager)
    record, approved = current_record(hsm_token, label, officers.policy)
    assert record is not None and approved
    now = int(time.time())
    then = dataclasses.replace(record, op="activate", issued_at=now, active_from=now - 1)
    hsm_token.put_data(STATE_APPLICATION, label, then.signed_by(officers.pair).to_bytes())
    registry = KeyRegistry(hsm_token, officers.policy, (dev_csca.certificate,))
    registry.refresh(time.time())
    entry = next(e for e in registry.entries if e.label == label)
    assert entry.state is KeyState.ACTIVE and entry.problem is None
    assert label in {a.entry.label for a in registry._active}
    assert f"key {label!r}: active key: ALLOWED_MECHANISMS empty" in caplog.text
