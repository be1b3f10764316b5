"""Checkpoints anchored in the HSM, through a real appliance and its SoftHSM token: each is signed
by the audit key (checked here with ``cryptography`` over message bytes built by this test),
matches the chain, and exposes what recomputed hashes hide — a rewritten stretch, a cut tail —
in ``signer audit verify`` and, for a cut tail, at the appliance's next start."""

from __future__ import annotations

import shutil
import sqlite3
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.ledger.records import link
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import items, run_cli

CHAIN = "anchored"
CONFIG = f'[ledger]\nchain = "{CHAIN}"\ncheckpoint_records = 200\ncheckpoint_seconds = 0.5\n'
#: The signed message, written out from the format rather than imported.
DOMAIN = b"hcert-signer ledger checkpoint v1\x00"


@dataclass
class Site:
    directory: Path
    ledger: Path
    audit_pem: bytes


def _signed_batches(appliance: Appliance, count: int, seed: int) -> None:
    dscs = appliance.dsc_by_kid()
    for n in range(count):
        batch = pb.SignBatchRequest(items=items(vaccination_payloads(300, seed=seed + n), "c"))
        results = appliance.stub().SignBatch(batch, timeout=60).results
        assert all(hc1_verifies(r.signed.hc1, dscs[r.signed.kid]) for r in results)


def _rows(path: Path, query: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return list(db.execute(query))
    finally:
        db.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """An appliance that signed 900 items and stopped cleanly (its last checkpoint written)."""
    require_softhsm()
    directory = tmp_path_factory.mktemp("anchored")
    appliance, process = start_appliance(directory, CONFIG)
    try:
        trust_labels = {e.label for e in appliance.trust_list()}
        assert not any("audit" in label for label in trust_labels)  # never a signing key
        _signed_batches(appliance, 3, seed=400)
    finally:
        stop_appliance(process)
    key = run_cli("audit", "key", "--config", str(appliance.config_path))
    assert key.returncode == 0, key.stderr
    yield Site(directory, directory / "dev" / "ledger.sqlite", key.stdout.encode())


def _verify(site: Site, ledger: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    config = str(site.directory / "signer.toml")
    return run_cli("audit", "verify", "--config", config, "--ledger", str(ledger), *extra)


def test_every_checkpoint_is_signed_by_the_audit_key_and_matches_the_chain(site: Site) -> None:
    public = load_pem_public_key(site.audit_pem)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    query = f"SELECT seq, hash FROM issuance WHERE chain = '{CHAIN}'"
    records = {row[0]: row[1] for row in _rows(site.ledger, query)}
    checkpoints = _rows(
        site.ledger,
        f"SELECT seq, head, time_us, signature FROM checkpoint WHERE chain = '{CHAIN}' "
        "ORDER BY seq",
    )
    assert len(records) == 900
    assert checkpoints, "no checkpoint was stored"
    assert checkpoints[-1][0] == 900  # the one made at shutdown, at the latest
    for seq, head, time_us, signature in checkpoints:
        assert isinstance(seq, int) and isinstance(time_us, int)
        assert isinstance(head, bytes) and isinstance(signature, bytes)
        assert head == records.get(seq, b"\0" * 32)
        name = CHAIN.encode()
        message = DOMAIN + struct.pack(">H", len(name)) + name + struct.pack(">QQ", seq, time_us)
        r, s = int.from_bytes(signature[:32]), int.from_bytes(signature[32:])
        public.verify(encode_dss_signature(r, s), message + head, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(InvalidSignature):  # the signature binds the sequence number
            forged = message[:-16] + struct.pack(">QQ", seq + 1, time_us) + head
            public.verify(encode_dss_signature(r, s), forged, ec.ECDSA(hashes.SHA256()))

    verified = _verify(site, site.ledger)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout and "HSM's head match" in verified.stdout

    pem = site.directory / "audit.pem"
    pem.write_bytes(site.audit_pem)
    offline = _verify(site, site.ledger, "--audit-key", str(pem))
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "pinned key" in offline.stdout


def test_a_history_rewritten_with_recomputed_hashes_is_found(site: Site, tmp_path: Path) -> None:
    """Record 250's body is changed and every hash after it recomputed: the hash chain holds,
    the checkpoints do not."""
    copy = tmp_path / "rewritten.sqlite"
    shutil.copy(site.ledger, copy)
    db = sqlite3.connect(copy)
    rows = list(
        db.execute(
            "SELECT seq, signature, body, prev FROM issuance WHERE chain = ? ORDER BY seq", (CHAIN,)
        )
    )
    prev = rows[248][3]  # record 249's prev
    for seq, signature, stored, _ in rows[248:]:
        body = stored[:-1] + bytes([stored[-1] ^ 1]) if seq == 250 else stored
        record = link(CHAIN, seq, signature, body, prev)
        db.execute(
            "UPDATE issuance SET body = ?, prev = ?, hash = ? WHERE chain = ? AND seq = ?",
            (record.body, record.prev, record.hash, CHAIN, seq),
        )
        prev = record.hash
    db.commit()
    db.close()

    checkpoint_seqs = [
        row[0] for row in _rows(copy, f"SELECT seq FROM checkpoint WHERE chain = '{CHAIN}'")
    ]
    below = max(s for s in [0, *checkpoint_seqs] if isinstance(s, int) and s < 250)
    verified = _verify(site, copy)
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert f"BROKEN at sequence number {below + 1}" in verified.stdout
    assert "rewritten" in verified.stdout


def test_a_cut_tail_is_found_and_the_appliance_will_not_sign_on_it(site: Site) -> None:
    """Records 601–900 and their checkpoints deleted, as after a restore from an older copy:
    audit verify finds the gap through the head the HSM keeps, and the appliance, started on
    that ledger, refuses to sign until the full ledger is back."""
    full = site.directory / "full.sqlite"
    shutil.copy(site.ledger, full)
    db = sqlite3.connect(site.ledger)
    db.execute("DELETE FROM issuance WHERE seq > 600")
    db.execute("DELETE FROM checkpoint WHERE seq > 600")
    db.commit()
    db.close()
    try:
        verified = _verify(site, site.ledger)
        assert verified.returncode == 1, verified.stdout + verified.stderr
        assert "BROKEN at sequence number 601" in verified.stdout
        assert "records 601–900 are missing" in verified.stdout

        appliance, process = start_appliance(site.directory, CONFIG)
        try:
            with pytest.raises(grpc.RpcError) as refused:
                _signed_batches(appliance, 1, seed=500)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "cut off" in (refused.value.details() or "")
            health = health_pb2_grpc.HealthStub(grpc.insecure_channel(appliance.address))
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            stop_appliance(process)
        assert _rows(site.ledger, "SELECT max(seq) FROM issuance") == [(600,)]
    finally:
        shutil.copy(full, site.ledger)

    appliance, process = start_appliance(site.directory, CONFIG)
    try:
        _signed_batches(appliance, 1, seed=600)  # the whole ledger is back: it signs again
    finally:
        stop_appliance(process)
    after = _verify(site, site.ledger)
    assert after.returncode == 0, after.stdout + after.stderr
