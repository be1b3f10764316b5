"""What a dual-controlled operation would do to a key, checked against the token as it is now.

:func:`plan` is run when an officer proposes and again when each officer approves: it refuses
operations the key's current state does not allow, and computes the key-state record the
operation will write. Every approver signs that record's content, so an approval can only ever
produce exactly the state that was shown to the officer (ADR 0005).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography import x509

from hsm import HsmToken, SigningKey, WeakKeyError
from signer.errors import KeyStateError
from signer.keys.certcheck import check_dsc, load_certificate
from signer.keys.counting import StoredRecord, records_that_count
from signer.keys.dsc import DscFacts
from signer.keys.officers import ApprovalPolicy
from signer.keys.proposals import Proposal
from signer.keys.selftest import self_test
from signer.keys.state import STATE_APPLICATION, KeyState, KeyStateRecord


@dataclass(frozen=True, slots=True)
class Plan:
    key_id: bytes
    record: KeyStateRecord | None  # the record to write; None for destroy
    certificate: DscFacts | None = None  # import: the checked DSC to store
    warnings: tuple[str, ...] = ()


def current_record(
    token: HsmToken, label: str, policy: ApprovalPolicy
) -> tuple[KeyStateRecord | None, bool]:
    """The record that counts for ``label`` and whether it is approved.

    The servers' registry decides with the same function (:func:`records_that_count`); without
    an approved record, the newest unapproved one (``generate`` writes one: alg and declared
    types) is returned."""
    stored = (
        StoredRecord(d.label, d.value)
        for d in token.data_objects(STATE_APPLICATION)
        if d.label == label
    )
    found = records_that_count(stored, policy)
    counted = found.counted.get(label)
    return (counted, True) if counted is not None else (found.unapproved.get(label), False)


def plan(
    token: HsmToken,
    policy: ApprovalPolicy,
    proposal: Proposal,
    *,
    country: str,
    now: dt.datetime,
    cscas: Sequence[x509.Certificate],
) -> Plan:
    """The checked effect of ``proposal``; KeyStateError saying what to do when refused."""
    label = proposal.label
    key = token.find_key(label)
    if key is None:
        raise KeyStateError(f"no key labelled {label!r} in the token (signer keys list)")
    record, approved = current_record(token, label, policy)
    if record is None or record.key_id != key.key_id:
        raise KeyStateError(
            f"key {label!r} has no state record of its own: keys are created with "
            "'signer keys generate'"
        )
    if record.issued_at > proposal.proposed_at:
        raise KeyStateError(
            f"key {label!r} changed after proposal {proposal.id} was made; propose it again"
        )
    stamped = replace(
        record,
        issued_at=proposal.proposed_at,
        op=proposal.op,
        proposal=proposal.id,
        approvals=(),
        version=record.version + 1,
    )
    at = int(proposal.params.get("at", proposal.proposed_at))
    state = record.effective(now.timestamp()) if approved else KeyState.PENDING
    stored = next((c for c in token.certificates() if c.key_id == key.key_id), None)

    if proposal.op == "import":
        if approved and record.active_from is not None:
            raise KeyStateError(
                f"key {label!r} is already activated; a new DSC needs a new key "
                "(signer keys generate) — see docs/rotation-runbook.md"
            )
        certificate = load_certificate(base64.b64decode(proposal.params["certificate"]), "DSC")
        checked = check_dsc(
            certificate,
            token_public_key_der=token.public_key_der(key.key_id),
            declared_types=record.types,
            country=country,
            now=now,
            cscas=_cscas_for_import(cscas, proposal.params.get("csca")),
        )
        new = replace(
            stamped,
            certificate_sha256=hashlib.sha256(checked.facts.der).digest(),
        )
        return Plan(key.key_id, new, checked.facts, checked.warnings)

    if proposal.op == "activate":
        bound = (
            approved
            and stored is not None
            and record.certificate_sha256 == hashlib.sha256(stored.der).digest()
        )
        if not bound or stored is None:
            raise KeyStateError(
                f"key {label!r} has no approved DSC: import one first (signer keys import-cert)"
            )
        if record.retire_at is not None:
            raise KeyStateError(f"key {label!r} is retired or scheduled to retire")
        if record.active_from is not None:
            raise KeyStateError(
                f"key {label!r} is already activated (from {_when(record.active_from)})"
            )
        _check_activation(token, key, DscFacts.from_der(stored.der), at)
        return Plan(key.key_id, replace(stamped, active_from=at))

    if proposal.op == "retire":
        if record.retire_at is not None and record.retire_at <= now.timestamp():
            raise KeyStateError(f"key {label!r} is already retired")
        return Plan(key.key_id, replace(stamped, retire_at=at))

    if proposal.op == "destroy":
        if state is not KeyState.RETIRED:
            raise KeyStateError(
                f"key {label!r} is {state.value}: only retired keys are destroyed "
                "(signer keys retire first)"
            )
        if stored is not None:
            dsc = DscFacts.from_der(stored.der)
            if dsc.not_after > now.timestamp() and not proposal.params.get("force"):
                raise KeyStateError(
                    f"the DSC of {label!r} is valid until {_when(dsc.not_after)}: certificates it "
                    "signed may still be in use, and destroying removes the DSC from this "
                    "appliance's trust list. Make sure it is published elsewhere, then use "
                    "--force --reason TEXT"
                )
        return Plan(key.key_id, None)

    raise KeyStateError(f"unknown operation {proposal.op!r}")


def _cscas_for_import(
    configured: Sequence[x509.Certificate], given_b64: str | None
) -> tuple[x509.Certificate, ...]:
    """The CSCAs a DSC is checked against at import: the configured ones (``[issuer] csca``,
    what the servers demand), or only the one ``--csca`` names, which must be among them."""
    if not given_b64:
        return tuple(configured)
    given = load_certificate(base64.b64decode(given_b64), "CSCA")
    if given not in configured:
        raise KeyStateError(
            "the --csca certificate is not one of the [issuer] csca certificates: the servers "
            "would never serve a DSC it issued"
        )
    return (given,)


def _check_activation(token: HsmToken, key: SigningKey, dsc: DscFacts, at: int) -> None:
    """DSC valid at the activation time, a kid no other DSC in the token has, and the self-test
    (attributes, algorithm, a signature made in the HSM that the DSC verifies)."""
    if at > dsc.not_after:
        raise KeyStateError(f"the DSC of {key.label!r} expires before {_when(at)}")
    for other in token.certificates():
        if other.key_id != key.key_id and DscFacts.from_der(other.der).kid == dsc.kid:
            raise KeyStateError(
                f"the kid {dsc.kid.hex()} of {key.label!r} collides with another DSC in the "
                "token; verifiers could not tell them apart: get a new certificate"
            )
    try:
        self_test(key, dsc)
    except (ValueError, WeakKeyError) as e:
        raise KeyStateError(f"key {key.label!r} cannot be activated: {e}") from e


def _when(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
