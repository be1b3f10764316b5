"""Certificates issued before the ledger existed, registered once under dual control (issue 8 §6).

A file of ``HC1:`` strings (one a line) is checked against this appliance's own DSCs exactly as
Reissue checks an original — the signature under a DSC of the token's key registry (any state,
expiry ignored) and its ``iat`` within the key's period — and each becomes the ledger record the
appliance would have written when it signed it: kid, alg, type, iat, exp and the three
revocation hashes (``signer.hcert.revocation``), RPC ``Register``. Nothing personal is kept.

The officers approve the file, not each certificate: a :class:`Registration` names the file's
SHA-256 and its count of certificates, is kept in the token like a key proposal (ADR 0005), and
carries each approving officer's signature over it (domain ``hcert-signer/registration/v1``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from hsm import HsmToken
from signer.domain import Alg
from signer.hcert.revocation import revocation_hashes
from signer.hcert.verify import verify_hc1
from signer.keys.officers import Approval, ApprovalPolicy, OfficerKey
from signer.keys.registry import KeyRegistry
from signer.ledger.records import Entry

REGISTRATION_APPLICATION = "hcert-signer/registration/v1"
RPC = "Register"
PROGRESS_EVERY = 10_000


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Checked:
    """A file's certificates as ledger entries (``client`` still to be filled in), and what
    stops it from being registered."""

    sha256: str
    entries: tuple[Entry, ...]
    problems: tuple[Problem, ...]


def hc1_lines(data: bytes) -> Iterator[tuple[int, str]]:
    """(line number, HC1 string) of every non-blank line."""
    for number, raw in enumerate(data.splitlines(), start=1):
        text = raw.decode("utf-8", errors="replace").strip()
        if text:
            yield number, text


def check_file(
    data: bytes,
    registry: KeyRegistry,
    country: str,
    progress: Callable[[str], None],
) -> Checked:
    """Verify every line against ``registry``'s DSCs as Reissue does and build its entry."""
    trust = registry.trust
    entries: list[Entry] = []
    problems: list[Problem] = []
    now_us = time.time_ns() // 1000
    for count, (number, text) in enumerate(hc1_lines(data), start=1):
        if count % PROGRESS_EVERY == 0:
            progress(f"{count} certificates checked")
        verdict = verify_hc1(text, trust, check_time=False)
        decoded = verdict.decoded
        if not verdict.ok or decoded is None or verdict.dsc is None:
            problems.append(Problem(number, f"hc1_{verdict.reason}", verdict.message))
            continue
        outside = registry.outside_key_period(verdict.dsc.certificate, decoded.iat)
        if outside is not None:
            message = f"this appliance cannot have signed it: {outside}"
            problems.append(Problem(number, "hc1_outside_key_period", message))
            continue
        alg = Alg.from_cose_id(decoded.alg_id)
        assert alg is not None and decoded.kid is not None  # verify_hc1 checked both
        uci, country_uci, signature = revocation_hashes(
            _uvci(decoded.dcc), decoded.iss or country, decoded.signature, alg
        )
        entries.append(
            Entry(
                now_us,
                "",
                None,
                RPC,
                decoded.kid,
                alg.value,
                decoded.cert_type.value,
                decoded.iat,
                decoded.exp,
                uci,
                country_uci,
                signature,
                None,
            )
        )
    return Checked(hashlib.sha256(data).hexdigest(), tuple(entries), tuple(problems))


def _uvci(dcc: dict[str, Any]) -> str | None:
    for group in ("v", "t", "r"):
        entries = dcc.get(group)
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            ci = entries[0].get("ci")
            return ci if isinstance(ci, str) else None
    return None


@dataclass(frozen=True, slots=True)
class Registration:
    """Officers' approval of registering one file: its SHA-256 and its count of certificates."""

    id: str
    sha256: str
    count: int
    proposed_by: str
    proposed_at: int
    expires_at: int
    approvals: tuple[Approval, ...] = ()

    @classmethod
    def new(cls, sha256: str, count: int, officer: OfficerKey, seconds: float) -> Registration:
        now = int(time.time())
        draft = cls(secrets.token_hex(6), sha256, count, officer.name, now, now + int(seconds))
        return draft.approved_by(officer)

    def content(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "op": "register",
            "sha256": self.sha256,
            "count": self.count,
            "proposed_by": self.proposed_by,
            "proposed_at": self.proposed_at,
            "expires_at": self.expires_at,
        }

    def approved_by(self, officer: OfficerKey) -> Registration:
        approval = officer.approve(REGISTRATION_APPLICATION, self.content())
        return replace(self, approvals=(*self.approvals, approval))

    def approvers(self, policy: ApprovalPolicy) -> frozenset[str]:
        return policy.approvers(REGISTRATION_APPLICATION, self.content(), self.approvals)

    def to_bytes(self) -> bytes:
        approvals = [a.to_json() for a in self.approvals]
        return json.dumps({"registration": self.content(), "approvals": approvals}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Registration:
        data = json.loads(raw)
        c = data["registration"]
        return cls(
            str(c["id"]), str(c["sha256"]), int(c["count"]), str(c["proposed_by"]),
            int(c["proposed_at"]), int(c["expires_at"]),
            tuple(Approval.from_json(a) for a in data["approvals"]),
        )  # fmt: skip


def pending(token: HsmToken, sha256: str, now: float) -> Registration | None:
    """The unexpired registration of the file with this SHA-256 (expired ones are removed)."""
    found: Registration | None = None
    for data in token.data_objects(REGISTRATION_APPLICATION):
        try:
            registration = Registration.from_bytes(data.value)
        except (ValueError, KeyError, TypeError):
            continue
        if registration.id != data.label:
            continue
        if registration.expires_at <= now:
            token.delete_data(REGISTRATION_APPLICATION, data.label)
        elif registration.sha256 == sha256:
            found = registration
    return found


def store(token: HsmToken, registration: Registration) -> None:
    token.put_data(REGISTRATION_APPLICATION, registration.id, registration.to_bytes())


def remove(token: HsmToken, registration: Registration) -> None:
    token.delete_data(REGISTRATION_APPLICATION, registration.id)
