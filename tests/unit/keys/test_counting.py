"""One function decides which key-state record counts (issue 8 §7): the servers' registry and
``signer keys`` (proposals, ``list``) must agree on every set of records a token can hold —
duplicates, forgeries, replays and garbage included."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsm import HsmToken
from signer.domain import Alg, CertType
from signer.keys.counting import StoredRecord, records_that_count
from signer.keys.plans import current_record
from signer.keys.registry import KeyRegistry
from signer.keys.state import STATE_APPLICATION, KeyStateRecord
from tests.unit.keys.conftest import Officers

KEY_ID = bytes(16)


@dataclass(frozen=True)
class Spec:
    """One record to store: its content's label (0/1), the label it is filed under (0/1)."""

    label: int
    filed_under: int
    issued_at: int
    op: str
    signers: str  # "", "a", "ab", "a+outsider", "garbage"


specs = st.lists(
    st.builds(
        Spec,
        label=st.integers(0, 1),
        filed_under=st.integers(0, 1),
        issued_at=st.integers(1_000, 1_004),  # a narrow range: ties happen
        op=st.sampled_from(["generate", "import", "activate", "retire"]),
        signers=st.sampled_from(["", "a", "ab", "ab", "a+outsider", "garbage"]),
    ),
    max_size=7,
)


def _stored(spec: Spec, labels: tuple[str, str], officers: Officers) -> StoredRecord:
    if spec.signers == "garbage":
        return StoredRecord(labels[spec.filed_under], b'{"content": {"v": 2}}')
    record = KeyStateRecord(
        label=labels[spec.label],
        key_id=KEY_ID,
        alg=Alg.ES256,
        types=frozenset({CertType.TEST}),
        issued_at=spec.issued_at,
        op=spec.op,
        active_from=spec.issued_at if spec.op == "activate" else None,
    )
    signers = {
        "": (),
        "a": (officers.a,),
        "ab": officers.pair,
        "a+outsider": (officers.a, officers.outsider),
    }[spec.signers]
    return StoredRecord(labels[spec.filed_under], record.signed_by(signers).to_bytes())


def _expected(stored: list[StoredRecord], label: str, officers: Officers) -> int | None:
    """The model: issued_at of the newest record filed under its own label with both roster
    officers' signatures, or None."""
    times = [
        r.issued_at
        for s in stored
        if s.label == label
        for r in [_parse(s.value)]
        if r is not None and r.label == label and r.approved(officers.policy)
    ]
    return max(times, default=None)


def _parse(raw: bytes) -> KeyStateRecord | None:
    try:
        return KeyStateRecord.from_bytes(raw)
    except (ValueError, KeyError, TypeError):
        return None


@settings(max_examples=25, deadline=None)
@given(specs=specs)
def test_registry_and_keys_cli_count_the_same_record(
    hsm_token: HsmToken, officers: Officers, specs: list[Spec]
) -> None:
    labels = (f"count-{secrets.token_hex(4)}", f"count-{secrets.token_hex(4)}")
    stored = [_stored(s, labels, officers) for s in specs]
    from pkcs11 import Attribute, ObjectClass

    for item in stored:  # straight into the token, duplicates included, as a PIN holder could
        hsm_token._session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.APPLICATION: STATE_APPLICATION,
                Attribute.LABEL: item.label,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.VALUE: item.value,
            }
        )
    try:
        servers = KeyRegistry(hsm_token, officers.policy, ())._records()
        for label in labels:
            cli_record, approved = current_record(hsm_token, label, officers.policy)
            server_record = servers.get(label)
            assert (cli_record if approved else None) == server_record
            wanted = _expected(stored, label, officers)
            assert (server_record.issued_at if server_record else None) == wanted
    finally:
        for label in labels:
            hsm_token.delete_data(STATE_APPLICATION, label)


@settings(max_examples=50, deadline=None)
@given(specs=specs, data=st.data())
def test_the_choice_does_not_depend_on_the_order_the_token_lists_records_in(
    officers: Officers, specs: list[Spec], data: st.DataObject
) -> None:
    stored = [_stored(s, ("x", "y"), officers) for s in specs]
    shuffled = data.draw(st.permutations(stored))
    first = records_that_count(stored, officers.policy)
    again = records_that_count(shuffled, officers.policy)
    assert first.counted == again.counted and first.unapproved == again.unapproved


def test_a_replayed_older_record_does_not_count_for_a_caller_that_saw_a_newer_one(
    officers: Officers,
) -> None:
    older = _stored(Spec(0, 0, 1_000, "activate", "ab"), ("k", "-"), officers)
    found = records_that_count([older], officers.policy, newest_seen={"k": 1_001})
    assert found.counted == {}
    assert [i.reason for i in found.ignored] == [
        "ignoring an approved key-state record older than one seen"
    ]
    assert records_that_count([older], officers.policy).counted["k"].issued_at == 1_000


@pytest.mark.parametrize(
    ("signers", "counts"), [("", False), ("a", False), ("a+outsider", False), ("ab", True)]
)
def test_only_two_roster_officers_make_a_record_count(
    officers: Officers, signers: str, counts: bool
) -> None:
    stored = _stored(Spec(0, 0, 1_000, "activate", signers), ("k", "-"), officers)
    found = records_that_count([stored], officers.policy)
    assert ("k" in found.counted) is counts
    assert ("k" in found.unapproved) is not counts


def _versioned(officers: Officers, version: int, issued_at: int) -> StoredRecord:
    record = KeyStateRecord(
        label="k",
        key_id=KEY_ID,
        alg=Alg.ES256,
        types=frozenset({CertType.TEST}),
        issued_at=issued_at,
        op="activate",
        active_from=issued_at,
        version=version,
    )
    return StoredRecord("k", record.signed_by(officers.pair).to_bytes())


def test_a_record_below_the_ledgers_floor_is_a_replay_after_any_restart(
    officers: Officers,
) -> None:
    """Issue 8 §7: a fresh caller (nothing remembered) still refuses it, because the floor
    comes from the ledger."""
    old = _versioned(officers, version=1, issued_at=1_000)
    found = records_that_count([old], officers.policy, floors={KEY_ID: 2})
    assert found.counted == {}
    [ignored] = found.ignored
    assert ignored.replay is not None and ignored.replay.version == 1
    assert "version 1 (activate) is below version 2" in ignored.reason
    assert "k" in records_that_count([old], officers.policy, floors={KEY_ID: 1}).counted
    assert "k" in records_that_count([old], officers.policy, floors={b"other": 9}).counted


def test_the_highest_version_counts_before_the_latest_time(officers: Officers) -> None:
    newer = _versioned(officers, version=3, issued_at=1_000)
    later = _versioned(officers, version=2, issued_at=5_000)
    for order in ([newer, later], [later, newer]):
        assert records_that_count(order, officers.policy).counted["k"].version == 3


def test_a_record_from_before_versions_keeps_its_approvals(officers: Officers) -> None:
    """Version 0 is left out of the signed content, so records written before versions existed
    still count (their floor is 0)."""
    unversioned = _versioned(officers, version=0, issued_at=1_000)
    assert b'"version"' not in unversioned.value
    assert records_that_count([unversioned], officers.policy).counted["k"].version == 0
