"""The issuance ledger through a real appliance: one record per signed item with revocation
hashes computed independently here, a Reissue linked to what it replaces, ``signer audit
verify`` on the live file, and fail-closed signing when the ledger's disk is full."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.ledger.records import Record
from signer.ledger.sqlite import SqliteReader
from signer.ledger.writer import PROBE_SECONDS
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.independent import hc1_claims, hc1_verifies
from tests.integration.helpers import (
    CoseParts,
    fill,
    items,
    signature_hash,
    tiny_tmpfs,
    to_json,
    wait_until,
)

OPERATOR = "nurse-7"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """An appliance of its own, so its ledger holds exactly what these tests sign."""
    require_softhsm()
    running, process = start_appliance(tmp_path_factory.mktemp("ledger"))
    try:
        yield running
    finally:
        stop_appliance(process)


def _records(path: Path) -> list[Record]:
    ledger = SqliteReader(path)
    try:
        [chain] = ledger.chains()
        return list(ledger.records(chain))
    finally:
        ledger.close()


def _sha16(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]


def _audit_verify(appliance: Appliance) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "signer.cli",
            "audit",
            "verify",
            "--config",
            str(appliance.config_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_one_record_per_signed_item_with_independent_revocation_hashes(fresh: Appliance) -> None:
    payloads = vaccination_payloads(12, seed=81)
    batch = items(payloads, "v")
    batch.insert(5, pb.SignItem(id="bad", payload_json="{}"))
    dscs: dict[bytes, x509.Certificate] = fresh.dsc_by_kid()
    signed: list[pb.Signed] = []
    for alg in (pb.ALGORITHM_ES256, pb.ALGORITHM_PS256):
        response = fresh.stub().SignBatch(
            pb.SignBatchRequest(items=batch, alg=alg),
            metadata=[("x-operator-id", OPERATOR)],
            timeout=60,
        )
        assert [r.id for r in response.results] == [i.id for i in batch]
        assert response.results[5].WhichOneof("outcome") == "rejected"
        signed += [r.signed for r in response.results if r.WhichOneof("outcome") == "signed"]
    assert len(signed) == 24

    records = _records(fresh.directory / "dev" / "ledger.sqlite")
    assert [r.seq for r in records] == list(range(1, 25))  # none for the rejected items
    for record, result in zip(records, signed, strict=True):
        assert hc1_verifies(result.hc1, dscs[result.kid])
        claims = hc1_claims(result.hc1)
        uvci = claims[-260][1]["v"][0]["ci"]
        entry = record.entry
        assert (entry.client, entry.operator, entry.rpc) == ("local", OPERATOR, "SignBatch")
        assert (entry.kid, entry.cert_type) == (result.kid, "vaccination")
        assert entry.alg == (
            "ES256" if claims and CoseParts.of(result.hc1).header()[1] == -7 else "PS256"
        )
        assert (entry.iat, entry.exp) == (claims[6], claims[4])
        assert entry.uci == _sha16(uvci.encode())
        assert entry.country_uci == _sha16((claims[1] + uvci).encode())
        assert entry.signature == signature_hash(result.hc1)
        assert entry.replaces is None
        assert len(entry.uci) == len(entry.country_uci) == len(entry.signature) == 16


def test_reissue_records_the_certificate_it_replaces(fresh: Appliance) -> None:
    [payload] = vaccination_payloads(1, seed=82)
    first = fresh.stub().SignBatch(
        pb.SignBatchRequest(items=[pb.SignItem(id="old", payload_json=to_json(payload))]),
        timeout=60,
    )
    old = first.results[0].signed.hc1
    response = fresh.stub().Reissue(
        pb.ReissueRequest(items=[pb.ReissueItem(id="old", hc1=old)]), timeout=60
    )
    new = response.results[0].signed.hc1
    last = _records(fresh.directory / "dev" / "ledger.sqlite")[-1]
    assert last.entry.rpc == "Reissue" and last.entry.operator is None
    assert last.entry.replaces == signature_hash(old)
    assert last.entry.signature == signature_hash(new)


def test_audit_show_answers_who_issued_a_certificate(fresh: Appliance) -> None:
    payloads = vaccination_payloads(3, seed=84)
    response = fresh.stub().SignBatch(
        pb.SignBatchRequest(items=items(payloads, "w")),
        metadata=[("x-operator-id", "clerk-2")],
        timeout=60,
    )
    second = response.results[1].signed
    base = [sys.executable, "-m", "signer.cli", "audit", "show", "--config", str(fresh.config_path)]
    by_uci = subprocess.run(
        [*base, "--uci", payloads[1]["v"][0]["ci"]], capture_output=True, text=True, check=True
    )
    [line] = [json.loads(text) for text in by_uci.stdout.splitlines()]
    assert (line["client"], line["operator"], line["rpc"]) == ("local", "clerk-2", "SignBatch")
    assert base64.b64decode(line["kid"]) == second.kid and line["iat"] == second.iat
    signature = base64.b64encode(signature_hash(second.hc1)).decode()
    by_signature = subprocess.run(
        [*base, "--signature-hash", signature], capture_output=True, text=True, check=True
    )
    assert [json.loads(t)["seq"] for t in by_signature.stdout.splitlines()] == [line["seq"]]


def test_audit_verify_reads_the_live_ledger(fresh: Appliance) -> None:
    fresh.stub().SignBatch(
        pb.SignBatchRequest(items=items(vaccination_payloads(3), "a")), timeout=60
    )
    count = len(_records(fresh.directory / "dev" / "ledger.sqlite"))
    audit = _audit_verify(fresh)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert f"{count} record(s), intact" in audit.stdout


# --- fail closed -------------------------------------------------------------------------------


@pytest.fixture
def tiny_ledger_dir(tmp_path: Path) -> Iterator[Path]:
    require_softhsm()
    with tiny_tmpfs(tmp_path / "ledger", "2m", "the full-ledger test") as directory:
        yield directory


def _health(appliance: Appliance) -> int:
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(appliance.address))
    status: int = stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status
    return status


def test_a_full_ledger_disk_signs_nothing_until_it_has_room(
    tmp_path: Path, tiny_ledger_dir: Path
) -> None:
    path = tiny_ledger_dir / "ledger.sqlite"
    appliance, process = start_appliance(
        tmp_path / "appliance", f'[ledger]\npath = "{path}"\nchain = "tiny"\n'
    )
    try:
        stub = appliance.stub()
        batch = pb.SignBatchRequest(items=items(vaccination_payloads(500, seed=83), "f"))
        assert all(
            r.WhichOneof("outcome") == "signed" for r in stub.SignBatch(batch, timeout=60).results
        )
        before = len(_records(path))
        filler = fill(tiny_ledger_dir)

        with pytest.raises(grpc.RpcError) as refused:
            stub.SignBatch(batch, timeout=60)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "ledger" in (refused.value.details() or "")
        assert _health(appliance) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as still:
            stub.SignBatch(pb.SignBatchRequest(items=batch.items[:1]), timeout=60)
        assert still.value.code() is grpc.StatusCode.UNAVAILABLE
        checking = pb.SignBatchRequest(items=batch.items[:3], validate_only=True)
        checked = stub.SignBatch(checking, timeout=60).results  # signs nothing: still answered
        assert [r.WhichOneof("outcome") for r in checked] == ["valid"] * 3
        assert len(_records(path)) == before  # nothing of the refused batches was recorded
        time.sleep(3 * PROBE_SECONDS)  # the probes find the disk still full
        assert _health(appliance) == health_pb2.HealthCheckResponse.NOT_SERVING

        filler.unlink()
        wait_until(
            lambda: _health(appliance) == health_pb2.HealthCheckResponse.SERVING or None,
            timeout=15,
            what="health SERVING once the ledger has room again",
        )
        again = stub.SignBatch(batch, timeout=60)
        assert all(r.WhichOneof("outcome") == "signed" for r in again.results)
        assert len(_records(path)) == before + 500
    finally:
        stop_appliance(process)
    ledger = SqliteReader(path)
    assert len(list(ledger.records("tiny"))) == 1000
    ledger.close()


def test_a_second_appliance_on_the_same_chain_is_refused(fresh: Appliance) -> None:
    """Same config, another port: two writers would fork the chain, so the second stops."""
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "signer.cli",
            "serve",
            "--config",
            str(fresh.config_path),
            "--port",
            "0",
            "--metrics-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 2, second.stdout + second.stderr
    assert "another running appliance writes the ledger chain" in second.stderr
    assert "[ledger] chain" in second.stderr
