"""Key management on the token: generate, CSR, and the dual-controlled operations (issue 4).

``import``, ``activate``, ``retire`` and ``destroy`` go through :meth:`KeyManager.propose` and
:meth:`KeyManager.approve`: one officer proposes, others approve, and the operation runs when
``[officers] required_approvals`` distinct roster officers have signed. Each step re-plans the
operation against the token as it is now (:mod:`signer.keys.plans`), so a proposal made stale by
another change is refused rather than applied. Every call, refusals included, is appended to the
ledger's key-events chain (``signer.ledger.events``), and every new key-state record's version
is accepted there (issue 8 §7). The CLI process is single-threaded: PKCS#11 is used from one
thread only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from cryptography import x509

from hsm import HsmError, HsmToken, KeyAlgorithm
from signer.domain import Alg, CertType
from signer.errors import BackendError, KeyStateError, SignerError
from signer.keys.csr import build_csr, parse_subject
from signer.keys.dsc import DscFacts
from signer.keys.officers import ApprovalPolicy, OfficerKey
from signer.keys.plans import Plan, current_record, plan
from signer.keys.proposals import Proposal, delete_proposal, load_proposals, store_proposal
from signer.keys.state import STATE_APPLICATION, KeyState, KeyStateRecord
from signer.ledger.events import KeyEventLog

T = TypeVar("T")
KEY_ALGORITHMS = {Alg.ES256: KeyAlgorithm.EC_P256, Alg.PS256: KeyAlgorithm.RSA_2048}


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One line of ``signer keys list``."""

    label: str
    key_id: str
    alg: str
    types: tuple[str, ...]
    state: str  # pending / active / retired, "+unapproved" when no approved record counts
    active_from: int | None
    retire_at: int | None
    kid: str | None  # hex
    dsc_not_before: int | None
    dsc_not_after: int | None
    approved_by: tuple[str, ...]
    signatures: int | None = None  # filled from /metrics when asked


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a propose / approve call did."""

    proposal: Proposal
    executed: bool
    approvers: tuple[str, ...]
    warnings: tuple[str, ...] = ()


class KeyManager:
    def __init__(
        self,
        token: HsmToken,
        policy: ApprovalPolicy,
        events: KeyEventLog,
        *,
        country: str,
        cscas: Sequence[x509.Certificate],
        proposal_seconds: float,
        actor: str,
        clock: Callable[[], float] = time.time,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._token = token
        self._policy = policy
        self._events = events
        self._country = country
        self._cscas = tuple(cscas)
        self._proposal_seconds = proposal_seconds
        self._actor = actor  # who runs the CLI when no officer key is given (audit only)
        self._clock = clock
        self._progress = progress

    # -- single-officer operations -------------------------------------------------------------

    def generate(self, label: str, alg: Alg, types: frozenset[CertType]) -> KeyStateRecord:
        """A key pair in the token (sign-only, sensitive, never extractable), record pending."""
        params = {"alg": alg.value, "types": sorted(t.value for t in types)}
        with self._audited("generate", [self._actor], label, params):
            if not types:
                raise KeyStateError("--types must name at least one certificate type")
            if any(k.label == label for k in self._token.signing_keys()):
                raise KeyStateError(f"the token already holds a key labelled {label!r}")
            if alg is Alg.PS256:
                self._progress("generating an RSA-2048 key pair in the HSM (can take seconds) …")
            key_id = secrets.token_bytes(16)
            self._hsm(lambda: self._token.generate_key(KEY_ALGORITHMS[alg], label, key_id))
            record = KeyStateRecord(
                label=label,
                key_id=key_id,
                alg=alg,
                types=types,
                issued_at=int(self._clock()),
                op="generate",
                version=1,
            )
            self._hsm(lambda: self._token.put_data(STATE_APPLICATION, label, record.to_bytes()))
            self._events.accept_version(key_id, record.version)
            return record

    def csr(self, label: str, subject: str) -> bytes:
        """A DER PKCS#10 request for the key, signed inside the HSM."""
        with self._audited("csr", [self._actor], label, {"subject": subject}):
            key = self._token.find_key(label)
            if key is None:
                raise KeyStateError(f"no key labelled {label!r} in the token (signer keys list)")
            try:
                name = parse_subject(subject)
            except ValueError as e:
                raise KeyStateError(f"--subject: {e}") from e
            public = self._hsm(lambda: self._token.public_key_der(key.key_id))
            try:
                return self._hsm(lambda: build_csr(key, public, name))
            except ValueError as e:
                raise KeyStateError(str(e)) from e

    # -- dual control ------------------------------------------------------------------------------

    def propose(
        self, op: str, label: str, params: Mapping[str, Any], officer: OfficerKey
    ) -> Outcome:
        """Officer's first signature: checks the operation now and stores the proposal."""
        with self._audited(op, [officer.name], label, _audit_params(params), "proposed") as note:
            self._check_roster(officer)
            now = int(self._clock())
            proposal = Proposal(
                id=Proposal.new_id(),
                op=op,
                label=label,
                params=dict(params),
                proposed_by=officer.name,
                proposed_at=now,
                expires_at=now + int(self._proposal_seconds),
            )
            result = self._plan(proposal)
            proposal = proposal.with_approval(officer, _content(result))
            self._hsm(lambda: store_proposal(self._token, proposal))
            note["proposal"] = proposal.id
            return Outcome(proposal, False, (officer.name,), result.warnings)

    def approve(self, proposal_id: str, officer: OfficerKey) -> Outcome:
        """Another officer's signature; runs the operation once enough officers signed."""
        found = {p.id: p for p in load_proposals(self._token)}.get(proposal_id)
        label = found.label if found else "?"
        op = found.op if found else "approve"
        params = _audit_params(found.params) if found else {}
        signed = sorted(found.approvers(self._policy)) if found else []
        officers = [*signed, *([] if officer.name in signed else [officer.name])]
        with self._audited(op, officers, label, {**params, "proposal": proposal_id}) as note:
            self._check_roster(officer)
            if found is None:
                raise KeyStateError(f"no proposal {proposal_id!r} (signer keys proposals)")
            proposal = found
            if self._clock() > proposal.expires_at:
                self._hsm(lambda: delete_proposal(self._token, proposal.id))
                raise KeyStateError(f"proposal {proposal.id} expired; it has been removed")
            approvers = proposal.approvers(self._policy)
            if len(approvers) != len(proposal.approvals) or proposal.proposed_by not in approvers:
                raise KeyStateError(
                    f"proposal {proposal.id} carries a signature that does not verify against "
                    "the roster: it was altered or its officer left the roster; do not approve it"
                )
            if officer.name in approvers:
                raise KeyStateError(
                    f"officer {officer.name!r} already signed proposal {proposal.id}: dual "
                    "control needs a different officer to approve"
                )
            result = self._plan(proposal)
            content = _content(result)
            if content is not None and len(
                self._policy.approvers(STATE_APPLICATION, content, proposal.state_approvals)
            ) != len(proposal.state_approvals):
                raise KeyStateError(
                    f"key {label!r} changed since proposal {proposal.id} was made; "
                    "propose the operation again"
                )
            proposal = proposal.with_approval(officer, content)
            approvers = proposal.approvers(self._policy)
            if len(approvers) < self._policy.required:
                self._hsm(lambda: store_proposal(self._token, proposal))
                note["outcome"] = "approved"
                return Outcome(proposal, False, tuple(sorted(approvers)), result.warnings)
            self._execute(proposal, result)
            note["outcome"] = "executed"
            return Outcome(proposal, True, tuple(sorted(approvers)), result.warnings)

    def proposals(self) -> list[Proposal]:
        return load_proposals(self._token)

    # -- reading ---------------------------------------------------------------------------------

    def rows(self) -> list[KeyRow]:
        now = self._clock()
        certificates = {c.key_id: c for c in self._token.certificates()}
        rows: list[KeyRow] = []
        for key in self._token.signing_keys():
            record, approved = current_record(self._token, key.label, self._policy)
            stored = certificates.get(key.key_id)
            dsc = DscFacts.from_der(stored.der) if stored else None
            bound = stored is None or (
                record is not None
                and record.certificate_sha256 == hashlib.sha256(stored.der).digest()
            )
            state = record.effective(now).value if record else KeyState.PENDING.value
            rows.append(
                KeyRow(
                    label=key.label,
                    key_id=key.key_id.hex(),
                    alg=record.alg.value if record else "?",
                    types=tuple(sorted(t.value for t in record.types)) if record else (),
                    state=state if approved and bound else f"{state}+unapproved",
                    active_from=record.active_from if record else None,
                    retire_at=record.retire_at if record else None,
                    kid=dsc.kid.hex() if dsc else None,
                    dsc_not_before=dsc.not_before if dsc else None,
                    dsc_not_after=dsc.not_after if dsc else None,
                    approved_by=tuple(sorted(record.approvers(self._policy))) if record else (),
                )
            )
        return sorted(rows, key=lambda r: r.label)

    # -- plumbing --------------------------------------------------------------------------------

    def _plan(self, proposal: Proposal) -> Plan:
        return self._hsm(
            lambda: plan(
                self._token,
                self._policy,
                proposal,
                country=self._country,
                cscas=self._cscas,
                now=dt.datetime.fromtimestamp(self._clock(), dt.UTC),
            )
        )

    def _execute(self, proposal: Proposal, result: Plan) -> None:
        def run() -> None:
            if proposal.op == "destroy":
                self._token.destroy_key_objects(result.key_id)
                self._token.delete_data(STATE_APPLICATION, proposal.label)
                for other in load_proposals(self._token):
                    if other.label == proposal.label:
                        delete_proposal(self._token, other.id)
                return
            assert result.record is not None
            record = replace(result.record, approvals=proposal.state_approvals)
            if proposal.op == "import":
                assert result.certificate is not None
                self._token.delete_certificates(result.key_id)
                self._token.store_certificate(
                    proposal.label,
                    result.key_id,
                    result.certificate.der,
                    result.certificate.certificate.subject.public_bytes(),
                )
            self._token.put_data(STATE_APPLICATION, proposal.label, record.to_bytes())
            delete_proposal(self._token, proposal.id)

        self._hsm(run)
        if result.record is not None and proposal.op != "destroy":
            self._events.accept_version(result.key_id, result.record.version)

    def _check_roster(self, officer: OfficerKey) -> None:
        if self._policy.roster.name_of(officer.key.public_key()) != officer.name:
            raise KeyStateError(f"officer key {officer.name!r} is not in the roster")

    def _hsm(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except HsmError as e:
            raise BackendError(f"the HSM failed: {e}") from e

    @contextmanager
    def _audited(
        self,
        op: str,
        officers: list[str],
        label: str,
        params: Mapping[str, Any],
        outcome: str = "ok",
    ) -> Iterator[dict[str, Any]]:
        note: dict[str, Any] = {"outcome": outcome}
        try:
            yield note
        except SignerError as e:
            self._events.append(
                op=op,
                officers=officers,
                label=label,
                kid=self._kid(label),
                params={**params, **{k: v for k, v in note.items() if k != "outcome"}},
                outcome="refused",
                error=str(e),
            )
            raise
        self._events.append(
            op=op,
            officers=officers,
            label=label,
            kid=self._kid(label),
            params={**params, **{k: v for k, v in note.items() if k != "outcome"}},
            outcome=note["outcome"],
        )

    def _kid(self, label: str) -> str | None:
        try:
            key = self._token.find_key(label)
            for stored in self._token.certificates():
                if key is not None and stored.key_id == key.key_id:
                    return hashlib.sha256(stored.der).digest()[:8].hex()
        except HsmError:
            return None
        return None


def _content(result: Plan) -> dict[str, Any] | None:
    return result.record.content() if result.record is not None else None


def _audit_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Proposal parameters for the audit line: certificates by SHA-256, not in full."""
    shown: dict[str, Any] = {}
    for name, value in params.items():
        if name in ("certificate", "csca") and isinstance(value, str):
            digest = hashlib.sha256(base64.b64decode(value)).hexdigest()
            shown[f"{name}_sha256"] = digest
        else:
            shown[name] = value
    return shown
