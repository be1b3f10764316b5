"""The ledger on a real PostgreSQL server (tests/postgres.py): the same chain as in SQLite, one
writer per chain across processes, a server restart survived without a gap, tamper cases named
by ``signer audit verify``, and then real appliances: two replicas writing one database, and an
outage mid-run that fails closed and heals."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.cli import main
from signer.config import LedgerConfig
from signer.errors import ConfigError
from signer.hcert.revocation import truncated_sha256
from signer.ledger.postgres import PostgresLedger, PostgresReader
from signer.ledger.store import LedgerError
from signer.ledger.verify import verify_chain
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import items, run_cli
from tests.postgres import PostgresServer
from tests.unit.ledger.test_chain import item_pair

CHAIN = "replica-a"


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    return postgres.new_database()


def _filled(url: str) -> None:
    store = PostgresLedger(url, CHAIN)
    store.append([item_pair(n) for n in range(1, 6)])
    store.append([item_pair(n) for n in range(6, 11)])
    store.close()


def _audit(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["audit", "verify", "--chain-only", "--ledger", url])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_chain_reopens_and_is_read_back_as_written(database: str) -> None:
    _filled(database)
    store = PostgresLedger(database, CHAIN)
    assert store.seq == 10
    [record] = store.append([item_pair(11)])
    assert record.seq == 11 and store.tip == (11, record.hash)
    assert store.hash_at(11) == record.hash and store.hash_at(12) is None
    assert store.known({item_pair(3)[0], b"\x01" * 16}) == {item_pair(3)[0]}
    store.close()
    reader = PostgresReader(database)
    try:
        assert reader.chains() == [CHAIN]
        records = list(reader.records(CHAIN))
        assert [r.seq for r in records] == list(range(1, 12))
        assert records[2].entry.uci == truncated_sha256(b"URN:UVCI:01:VN:TEST000003")
        assert verify_chain(CHAIN, records).finding is None
    finally:
        reader.close()


def test_one_writer_per_chain_while_it_is_open(database: str) -> None:
    first = PostgresLedger(database, CHAIN)
    try:
        with pytest.raises(LedgerError, match="another running appliance"):
            PostgresLedger(database, CHAIN)
        other = PostgresLedger(database, "replica-b")  # another chain, same database: fine
        other.append([item_pair(1)])
        other.close()
    finally:
        first.close()
    PostgresLedger(database, CHAIN).close()  # released with the connection


def test_a_server_restart_fails_writes_then_the_chain_goes_on(
    postgres: PostgresServer, database: str
) -> None:
    store = PostgresLedger(database, CHAIN)
    store.append([item_pair(1), item_pair(2)])
    postgres.stop()
    try:
        with pytest.raises(LedgerError):
            store.append([item_pair(3)])
        with pytest.raises(LedgerError):
            store.probe()
    finally:
        postgres.start()
    store.probe()  # connects again and takes the chain's lock again
    [record] = store.append([item_pair(3)])
    store.close()
    assert record.seq == 3
    reader = PostgresReader(database)
    assert verify_chain(CHAIN, reader.records(CHAIN)).finding is None
    reader.close()


@pytest.mark.parametrize(
    ("tamper", "first_bad", "words"),
    [
        ("UPDATE issuance SET body = '\\x01'::bytea WHERE seq = 2", 2, "changed"),
        ("DELETE FROM issuance WHERE seq = 6", 6, "missing"),
        (
            "UPDATE issuance SET seq = -3 WHERE seq = 3; UPDATE issuance SET seq = 3 WHERE seq = 7;"
            " UPDATE issuance SET seq = 7 WHERE seq = -3",
            3,
            "moved",
        ),
    ],
)
def test_audit_verify_names_the_first_bad_record_in_postgres(
    database: str, capsys: pytest.CaptureFixture[str], tamper: str, first_bad: int, words: str
) -> None:
    _filled(database)
    assert _audit(database, capsys)[0] == 0
    with psycopg.connect(database, autocommit=True) as db:
        for statement in tamper.split(";"):
            db.execute(statement.encode())
    status, output = _audit(database, capsys)
    assert status == 1, output
    assert f"BROKEN at sequence number {first_bad}:" in output
    assert words in output


def test_a_database_without_a_ledger_is_an_error(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, output = _audit(database, capsys)
    assert status == 2
    assert "no ledger" in output


def test_a_password_in_the_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="PGPASSWORD"):
        LedgerConfig(url="postgresql://signer:secret@db.example/ledger")
    with pytest.raises(ConfigError, match="PGPASSWORD"):
        LedgerConfig(url="postgresql:///ledger?host=/run/pg&password=secret")
    with pytest.raises(ConfigError, match="one ledger"):
        LedgerConfig(path="ledger.sqlite", url="postgresql:///ledger")


# -- real appliances -----------------------------------------------------------------------------


def _sign(appliance: Appliance, count: int, seed: int) -> list[pb.ItemResult]:
    batch = pb.SignBatchRequest(items=items(vaccination_payloads(count, seed=seed), "pg"))
    return list(appliance.stub().SignBatch(batch, timeout=60).results)


def _health(appliance: Appliance) -> int:
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(appliance.address))
    return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status)


def _wait_for_health(appliance: Appliance, status: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while _health(appliance) != status:
        assert time.monotonic() < deadline, f"health never became {status}"
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_two_replicas_write_one_postgres_ledger_and_one_query_covers_both(
    tmp_path: Path, database: str
) -> None:
    """Two appliances on one token (as replicas are) and one database, each with its own chain:
    both sign, and ``signer audit show``/``verify`` read both chains from the one database,
    checkpoints and the HSM's heads included."""
    require_softhsm()
    base = tmp_path
    extra = 'url = "{url}"\nchain = "{chain}"\ncheckpoint_seconds = 0.5\n'
    first, first_process = start_appliance(
        base / "a", "[ledger]\n" + extra.format(url=database, chain="a"), workers=1
    )
    (base / "b").mkdir()
    (base / "b" / "dev").symlink_to(base / "a" / "dev")  # the same token
    try:
        second, second_process = start_appliance(
            base / "b", "[ledger]\n" + extra.format(url=database, chain="b"), workers=1
        )
    except Exception:
        stop_appliance(first_process)
        raise
    try:
        dscs = first.dsc_by_kid()
        signed = {}
        for n, appliance in enumerate((first, second)):
            results = _sign(appliance, 30, seed=100 + n)
            assert all(r.WhichOneof("outcome") == "signed" for r in results)
            assert all(hc1_verifies(r.signed.hc1, dscs[r.signed.kid]) for r in results)
            signed[appliance.address] = results
        time.sleep(1.5)  # a checkpoint of each chain
    finally:
        stop_appliance(second_process)
        stop_appliance(first_process)
    reader = PostgresReader(database)
    try:
        assert reader.chains() == ["a", "b"]
        assert [len(list(reader.records(c))) for c in ("a", "b")] == [30, 30]
        assert all(reader.checkpoints(c) for c in ("a", "b"))
    finally:
        reader.close()
    audit = run_cli("audit", "verify", "--config", str(first.config_path), "--ledger", database)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "chain 'a': 30 record(s), intact" in audit.stdout
    assert "chain 'b': 30 record(s), intact" in audit.stdout
    shown = run_cli("audit", "show", "--ledger", database, "--config", str(first.config_path))
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stdout.splitlines()) == 60


@pytest.mark.timeout(300)
def test_postgres_stopped_mid_run_fails_closed_then_heals(
    tmp_path: Path, postgres: PostgresServer, database: str
) -> None:
    """While the database is down nothing is returned as signed (UNAVAILABLE, NOT_SERVING);
    when it is back the appliance serves again by itself, and the chain has no gap."""
    require_softhsm()
    appliance, process = start_appliance(
        tmp_path / "pg",
        f'[ledger]\nurl = "{database}"\nchain = "outage"\n',
        workers=1,
    )
    try:
        assert len(_sign(appliance, 20, seed=1)) == 20
        postgres.stop()
        try:
            with pytest.raises(grpc.RpcError) as refused:
                _sign(appliance, 20, seed=2)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            _wait_for_health(appliance, health_pb2.HealthCheckResponse.NOT_SERVING)
            with pytest.raises(grpc.RpcError) as again:
                _sign(appliance, 5, seed=3)
            assert again.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            postgres.start()
        _wait_for_health(appliance, health_pb2.HealthCheckResponse.SERVING)
        dscs = appliance.dsc_by_kid()
        results = _sign(appliance, 20, seed=4)
        assert all(hc1_verifies(r.signed.hc1, dscs[r.signed.kid]) for r in results)
    finally:
        stop_appliance(process)
    reader = PostgresReader(database)
    try:
        records = list(reader.records("outage"))
    finally:
        reader.close()
    assert verify_chain("outage", records).finding is None
    # the refused batches left no record; a batch cut off in its commit could (over-recording)
    assert len(records) == 40
