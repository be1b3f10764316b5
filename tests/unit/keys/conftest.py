"""Fixtures for key-management tests: officers, a roster, and a KeyManager on the session token.

The session ``hsm_token`` is shared by every in-process HSM test (PKCS#11 loads once per
process), so each test uses labels of its own, and a CSCA of its own (``dev_csca`` below): a
registry serves only DSCs that chain to its CSCAs, so no test sees another test's keys, whatever
order they run in (issue 9 §12).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hsm import HsmToken
from signer.keys.devca import DevCsca
from signer.keys.lifecycle import KeyManager
from signer.keys.officers import ApprovalPolicy, OfficerKey, create_officer
from signer.ledger.events import KeyEventLog
from tests.officers import signed_roster, unsigned_roster


@dataclass(frozen=True)
class Officers:
    a: OfficerKey
    b: OfficerKey
    c: OfficerKey
    outsider: OfficerKey  # a valid Ed25519 key that is not in the roster
    policy: ApprovalPolicy

    @property
    def pair(self) -> tuple[OfficerKey, OfficerKey]:
        return (self.a, self.b)


@pytest.fixture(scope="session")
def officers(tmp_path_factory: pytest.TempPathFactory) -> Officers:
    roster_dir = tmp_path_factory.mktemp("roster")
    _, roster = signed_roster(roster_dir, "alice", "bob", "carol")
    outside = tmp_path_factory.mktemp("outside")
    create_officer(outside, "mallory")
    a, b, c = (
        OfficerKey.load(roster_dir / f"{n}.key.pem", roster) for n in ("alice", "bob", "carol")
    )
    mallory = OfficerKey.load(outside / "mallory.key.pem", unsigned_roster(outside, "mallory"))
    return Officers(a, b, c, outsider=mallory, policy=ApprovalPolicy(roster, required=2))


@pytest.fixture
def dev_csca(tmp_path_factory: pytest.TempPathFactory) -> DevCsca:
    """A dev CSCA for this test alone, in place of the session's (tests/conftest.py).

    The keys other tests left active in the shared token (an active recovery key, a key
    activated later than this test's) would otherwise be selected by this test's registry:
    ``test_pending_and_scheduled_keys_do_not_sign`` failed in 5 of 9 shuffled orders. With its
    own CSCA a test's registry, KeyManager and imports see only the DSCs it issued."""
    return DevCsca.load_or_create(tmp_path_factory.mktemp("csca"), "VN")


class Clock:
    """A settable clock for scheduled operations."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_manager(
    hsm_token: HsmToken, officers: Officers, dev_csca: DevCsca, tmp_path: Path
) -> Callable[..., KeyManager]:
    def make(clock: Callable[[], float] | None = None, country: str = "VN") -> KeyManager:
        return KeyManager(
            hsm_token,
            officers.policy,
            # a chain per test: the session token keeps every chain's head, and each test has
            # its own ledger file
            KeyEventLog(str(tmp_path / "ledger.sqlite"), hsm_token, chain=unique("key-events")),
            country=country,
            cscas=(dev_csca.certificate,),
            proposal_seconds=3600,
            actor="test",
            clock=clock or time.time,
        )

    return make


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"
