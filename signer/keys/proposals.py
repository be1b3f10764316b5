"""Proposals: the first half of a dual-controlled key operation, kept in the token.

An officer's ``signer keys activate|retire|destroy|import-cert`` stores a proposal as a CKO_DATA
object (application ``hcert-signer/proposal/v1``, label = its id) holding the canonical proposal
``{id, op, label, params, proposed_by, proposed_at, expires_at}`` and the approvals so far:
each approving officer signs the proposal and, for state-changing operations, the key-state
content the operation will write. ``signer keys approve ID`` by other officers completes it
(ADR 0005). Keeping proposals in the token lets officers on different machines approve each
other's proposals without a shared file system.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from typing import Any

from hsm import HsmToken
from signer.keys.officers import Approval, ApprovalPolicy, OfficerKey
from signer.keys.state import STATE_APPLICATION

PROPOSAL_APPLICATION = "hcert-signer/proposal/v1"
OPERATIONS = ("import", "activate", "retire", "destroy")


@dataclass(frozen=True, slots=True)
class Proposal:
    id: str
    op: str
    label: str
    params: dict[str, Any]
    proposed_by: str
    proposed_at: int
    expires_at: int
    approvals: tuple[Approval, ...] = ()  # over content(), by PROPOSAL_APPLICATION
    state_approvals: tuple[Approval, ...] = ()  # over the resulting key-state content

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(6)

    def content(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "label": self.label,
            "params": self.params,
            "proposed_by": self.proposed_by,
            "proposed_at": self.proposed_at,
            "expires_at": self.expires_at,
        }

    def approvers(self, policy: ApprovalPolicy) -> frozenset[str]:
        """Officers whose signature over the proposal verifies against the roster."""
        return policy.approvers(PROPOSAL_APPLICATION, self.content(), self.approvals)

    def with_approval(self, officer: OfficerKey, state_content: dict[str, Any] | None) -> Proposal:
        """This proposal with ``officer``'s signature over it (and over the new state)."""
        state = (
            () if state_content is None else (officer.approve(STATE_APPLICATION, state_content),)
        )
        return replace(
            self,
            approvals=(*self.approvals, officer.approve(PROPOSAL_APPLICATION, self.content())),
            state_approvals=(*self.state_approvals, *state),
        )

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "proposal": self.content(),
                "approvals": [a.to_json() for a in self.approvals],
                "state_approvals": [a.to_json() for a in self.state_approvals],
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Proposal:
        data = json.loads(raw)
        p = data["proposal"]
        return cls(
            id=str(p["id"]),
            op=str(p["op"]),
            label=str(p["label"]),
            params=dict(p["params"]),
            proposed_by=str(p["proposed_by"]),
            proposed_at=int(p["proposed_at"]),
            expires_at=int(p["expires_at"]),
            approvals=tuple(Approval.from_json(a) for a in data["approvals"]),
            state_approvals=tuple(Approval.from_json(a) for a in data["state_approvals"]),
        )


def load_proposals(token: HsmToken) -> list[Proposal]:
    """Every readable proposal in the token, oldest first."""
    found: list[Proposal] = []
    for data in token.data_objects(PROPOSAL_APPLICATION):
        try:
            proposal = Proposal.from_bytes(data.value)
        except (ValueError, KeyError, TypeError):
            continue
        if proposal.id == data.label:
            found.append(proposal)
    return sorted(found, key=lambda p: p.proposed_at)


def store_proposal(token: HsmToken, proposal: Proposal) -> None:
    token.put_data(PROPOSAL_APPLICATION, proposal.id, proposal.to_bytes())


def delete_proposal(token: HsmToken, proposal_id: str) -> None:
    token.delete_data(PROPOSAL_APPLICATION, proposal_id)
