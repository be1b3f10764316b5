"""Key lifecycle state, stored as a CKO_DATA record in the HSM next to the key.

Keeping the state in the token (not in a local file) lets every worker process and every replica
sharing the HSM agree on which key signs; each re-reads it every ``key_refresh_seconds``
(docs/adr/0003-key-state-in-the-hsm.md).

Format v2 (issue 4, docs/adr/0005-key-management-and-dual-control.md): the record is a timeline —
``active_from`` and ``retire_at`` — plus the SHA-256 of the DSC it covers, and carries the
officers' approvals: Ed25519 signatures over the canonical content. The server honours an
``active`` state, and the certificate at all, only when ``[officers] required_approvals``
distinct roster officers signed exactly this content (:meth:`KeyStateRecord.approved`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from signer.domain import Alg, CertType
from signer.keys.officers import Approval, ApprovalPolicy, OfficerKey

STATE_APPLICATION = "hcert-signer/key-state/v2"


class KeyState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class KeyStateRecord:
    """What the officers decided about one key. Times are seconds since the epoch."""

    label: str
    key_id: bytes
    alg: Alg
    types: frozenset[CertType]
    issued_at: int  # when this content was proposed; never decreases for one key
    op: str  # the operation that wrote it: generate, import, activate, retire, dev-bootstrap
    active_from: int | None = None  # a future value is a scheduled activation
    retire_at: int | None = None  # a future value is a scheduled retirement
    certificate_sha256: bytes | None = None  # the DSC these approvals cover
    proposal: str | None = None  # id of the approved proposal
    approvals: tuple[Approval, ...] = field(default=())
    #: One more than the record it replaces (issue 8 §7); the ledger keeps the highest accepted
    #: per key, so an older record written back into the token is refused after any restart.
    #: 0 for a record written before versions existed (its content has no "version").
    version: int = 0

    def content(self) -> dict[str, Any]:
        """The canonical content every approval signs (everything except the approvals)."""
        return {
            "v": 2,
            "label": self.label,
            "key_id": self.key_id.hex(),
            "alg": self.alg.value,
            "types": sorted(t.value for t in self.types),
            "issued_at": self.issued_at,
            "op": self.op,
            "active_from": self.active_from,
            "retire_at": self.retire_at,
            "certificate_sha256": (
                self.certificate_sha256.hex() if self.certificate_sha256 is not None else None
            ),
            "proposal": self.proposal,
        } | ({"version": self.version} if self.version else {})

    def effective(self, now: float) -> KeyState:
        """Retired once ``retire_at`` has come, active once ``active_from`` has, else pending."""
        if self.retire_at is not None and now >= self.retire_at:
            return KeyState.RETIRED
        if self.active_from is not None and now >= self.active_from:
            return KeyState.ACTIVE
        return KeyState.PENDING

    def since(self, now: float) -> int:
        """When the effective state took effect (the activation time for an active key)."""
        state = self.effective(now)
        if state is KeyState.RETIRED and self.retire_at is not None:
            return self.retire_at
        if state is KeyState.ACTIVE and self.active_from is not None:
            return self.active_from
        return self.issued_at

    def approved(self, policy: ApprovalPolicy) -> bool:
        return policy.satisfied(STATE_APPLICATION, self.content(), self.approvals)

    def approvers(self, policy: ApprovalPolicy) -> frozenset[str]:
        return policy.approvers(STATE_APPLICATION, self.content(), self.approvals)

    def signed_by(self, officers: tuple[OfficerKey, ...]) -> KeyStateRecord:
        """This record with the given officers' approvals (replacing any it had)."""
        content = self.content()
        return replace(
            self, approvals=tuple(o.approve(STATE_APPLICATION, content) for o in officers)
        )

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"content": self.content(), "approvals": [a.to_json() for a in self.approvals]},
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyStateRecord:
        """Parse a record; ValueError / KeyError / TypeError when it is not one (whatever a PIN
        holder wrote: issue 9 §5 found ``{"content": 5}`` raising AttributeError in every
        worker)."""
        try:
            return cls._parse(raw)
        except AttributeError as e:
            raise ValueError(f"malformed key-state record: {e}") from e

    @classmethod
    def _parse(cls, raw: bytes) -> KeyStateRecord:
        data = json.loads(raw)
        content = data["content"]
        if content.get("v") != 2:
            raise ValueError(f"unknown key-state record version {content.get('v')!r}")
        digest = content["certificate_sha256"]
        return cls(
            label=str(content["label"]),
            key_id=bytes.fromhex(content["key_id"]),
            alg=Alg(content["alg"]),
            types=frozenset(CertType(t) for t in content["types"]),
            issued_at=int(content["issued_at"]),
            op=str(content["op"]),
            active_from=_optional_int(content["active_from"]),
            retire_at=_optional_int(content["retire_at"]),
            certificate_sha256=bytes.fromhex(digest) if digest is not None else None,
            proposal=content["proposal"],
            approvals=tuple(Approval.from_json(a) for a in data["approvals"]),
            version=_version(content.get("version", 0)),
        )


def _version(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"key-state record version {value!r} is not a whole number ≥ 0")
    return value


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
