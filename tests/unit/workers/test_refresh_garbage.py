"""A worker's key refresh leaves nothing for the cyclic GC to find later, on a real SoftHSM token.

python-pkcs11 manufactures a class for every object a search returns, and a class is a reference
cycle. A worker collects its young generation only every 50 000 allocations (ADR 0004), so
before the refresh collected them itself, a busy worker kept each refresh's classes for tens of
minutes and its RSS grew steadily in the soak (docs/soak.md)."""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest

from hsm import HsmToken
from signer.config import load_config
from signer.domain import Alg
from signer.keys.devca import DevCsca, create_dev_key
from signer.keys.officers import ApprovalPolicy, OfficerKey
from signer.keys.registry import KeyRegistry
from signer.ledger.anchor import HeadKeeper
from signer.workers.process import GC_THRESHOLDS, _Worker
from tests.officers import signed_roster


@pytest.fixture
def worker_and_registry(hsm_token: HsmToken, tmp_path: Path) -> tuple[_Worker, KeyRegistry]:
    csca = DevCsca.load_or_create(tmp_path / "csca", "VN")  # this test's keys alone
    _, roster = signed_roster(tmp_path / "roster", "alice", "bob")
    pair = tuple(
        OfficerKey.load(tmp_path / "roster" / f"{n}.key.pem", roster) for n in ("alice", "bob")
    )
    create_dev_key(hsm_token, csca, Alg.ES256, "refresh-garbage", "VN", officers=pair)
    registry = KeyRegistry(hsm_token, ApprovalPolicy(roster, required=2), (csca.certificate,))
    return _Worker(load_config(None), hsm_token, registry, HeadKeeper(hsm_token)), registry


@pytest.fixture
def worker_gc() -> Iterator[None]:
    """The worker's GC settings (signer.workers.process.run) for the length of a test."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def test_refreshes_leave_no_pkcs11_classes_behind(
    worker_and_registry: tuple[_Worker, KeyRegistry], worker_gc: None
) -> None:
    worker, registry = worker_and_registry
    front, end = socket.socketpair()
    with front, end:
        worker.refresh(end)  # the first listing: the registry's live handles
        assert worker.lost is None
        assert any(e.label == "refresh-garbage" for e in registry.entries)
        before = _pkcs11_classes()
        for _ in range(5):
            worker.refresh(end)
        after = _pkcs11_classes()
    # The handles of the last refresh replace those of the first: as many classes live as before.
    assert after == before


def _pkcs11_classes() -> int:
    """Classes of PKCS#11 objects the GC tracks: python-pkcs11's own, and one per object found."""
    return sum(1 for o in gc.get_objects() if isinstance(o, type) and issubclass(o, pkcs11.Object))
