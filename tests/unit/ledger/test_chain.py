"""The ledger's hash chain in a real SQLite file: every tamper case is named by its first bad
sequence number, through ``signer audit verify`` itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from signer.cli import main
from signer.hcert.revocation import truncated_sha256
from signer.ledger.records import Entry, decode, encode, link
from signer.ledger.sqlite import SqliteLedger, SqliteReader
from signer.ledger.verify import verify_chain

CHAIN = "replica-a"


def _entry(n: int) -> Entry:
    uvci = f"URN:UVCI:01:VN:TEST{n:06d}"
    return Entry(
        1_700_000_000_000_000 + n,
        "clinic-1",
        "nurse-7" if n % 2 else None,
        "SignBatch",
        b"kid-0001",
        "ES256",
        "vaccination",
        1_700_000_000,
        1_731_536_000,
        truncated_sha256(uvci.encode()),
        truncated_sha256(("VN" + uvci).encode()),
        truncated_sha256(n.to_bytes(8, "big")),
        None,
    )


def item_pair(n: int) -> tuple[bytes, bytes]:
    entry = _entry(n)
    return entry.signature, encode(entry)


def _rogue_body(path: Path, seq: int) -> bytes:
    """Record ``seq``'s body with another client, as someone with write access would put it."""
    reader = SqliteReader(path)
    record = next(r for r in reader.records(CHAIN) if r.seq == seq)
    reader.close()
    return encode(record.entry._replace(client="rogue"))


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    store = SqliteLedger(path, CHAIN)
    store.append([item_pair(n) for n in range(1, 6)])
    store.append([item_pair(n) for n in range(6, 11)])
    store.close()
    return path


def _audit(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["audit", "verify", "--chain-only", "--ledger", str(path)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    with db:
        for statement in statements:
            db.execute(statement)
    db.close()


def test_intact_chain_numbers_from_one(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, output = _audit(ledger, capsys)
    assert status == 0, output
    assert "10 record(s), hash chain intact" in output
    reader = SqliteReader(ledger)
    assert [r.seq for r in reader.records(CHAIN)] == list(range(1, 11))
    assert reader.chains() == [CHAIN]


def test_reopened_ledger_continues_the_chain(ledger: Path) -> None:
    store = SqliteLedger(ledger, CHAIN)
    assert store.seq == 10
    [record] = store.append([item_pair(11)])
    store.close()
    assert record.seq == 11
    reader = SqliteReader(ledger)
    report = verify_chain(CHAIN, reader.records(CHAIN))
    assert report.records == 11 and report.finding is None


@pytest.mark.parametrize(
    ("tamper", "first_bad", "words"),
    [
        ("UPDATE issuance SET signature = x'00' WHERE seq = 1", 1, "signature column"),
        ("UPDATE issuance SET body = x'01' WHERE seq = 2", 2, "changed"),
        ("DELETE FROM issuance WHERE seq = 6", 6, "missing"),
        ("DELETE FROM issuance WHERE seq IN (1, 2)", 1, "missing"),
        # a record moved: 3 and 7 trade places (their seq numbers kept)
        (
            "UPDATE issuance SET seq = -3 WHERE seq = 3; UPDATE issuance SET seq = 3 WHERE seq = 7;"
            " UPDATE issuance SET seq = 7 WHERE seq = -3",
            3,
            "moved",
        ),
    ],
)
def test_each_tamper_case_names_its_first_bad_record(
    ledger: Path, capsys: pytest.CaptureFixture[str], tamper: str, first_bad: int, words: str
) -> None:
    _sql(ledger, *tamper.split(";"))
    status, output = _audit(ledger, capsys)
    assert status == 1, output
    assert f"BROKEN at sequence number {first_bad}:" in output
    assert words in output


def test_an_inserted_record_breaks_the_links_after_it(
    ledger: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker inserts a record after 5 and renumbers the rest to make room, recomputing
    the new record's own hash: record 7 (the old 6) no longer follows record 6."""
    reader = SqliteReader(ledger)
    fifth = next(r for r in reader.records(CHAIN) if r.seq == 5)
    reader.close()
    forged = link(CHAIN, 6, *item_pair(99), fifth.hash)
    _sql(ledger, "UPDATE issuance SET seq = seq + 1000 WHERE seq >= 6")
    _sql(ledger, "UPDATE issuance SET seq = seq - 999 WHERE seq >= 1000")
    db = sqlite3.connect(ledger)
    with db:
        db.execute(
            "INSERT INTO issuance VALUES (?, ?, ?, ?, ?, ?)",
            forged,
        )
    db.close()
    status, output = _audit(ledger, capsys)
    assert status == 1, output
    assert "BROKEN at sequence number 7:" in output
    assert "does not follow record 6" in output


def test_missing_or_empty_ledger_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, output = _audit(tmp_path / "nowhere.sqlite", capsys)
    assert status == 2 and "no ledger at" in output
    SqliteLedger(tmp_path / "empty.sqlite", CHAIN).close()
    status, output = _audit(tmp_path / "empty.sqlite", capsys)
    assert status == 2 and "holds no records" in output


def test_a_failed_commit_leaves_no_gap(tmp_path: Path) -> None:
    store = SqliteLedger(tmp_path / "ledger.sqlite", CHAIN)
    store.append([item_pair(1)])
    _sql(
        tmp_path / "ledger.sqlite",
        "CREATE TRIGGER refuse BEFORE INSERT ON issuance BEGIN SELECT RAISE(ABORT, 'no'); END",
    )
    with pytest.raises(Exception, match="cannot write the ledger"):
        store.append([item_pair(2), item_pair(3)])
    assert store.seq == 1
    _sql(tmp_path / "ledger.sqlite", "DROP TRIGGER refuse")
    [record] = store.append([item_pair(2)])
    store.close()
    assert record.seq == 2
    reader = SqliteReader(tmp_path / "ledger.sqlite")
    assert verify_chain(CHAIN, reader.records(CHAIN)).finding is None


def test_an_edited_field_is_named(ledger: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite3.connect(ledger)
    with db:
        db.execute("UPDATE issuance SET body = ? WHERE seq = 4", (_rogue_body(ledger, 4),))
    db.close()
    status, output = _audit(ledger, capsys)
    assert status == 1 and "BROKEN at sequence number 4: record 4 was changed" in output


def test_bodies_decode_to_what_was_encoded() -> None:
    for n in (1, 2):
        assert decode(encode(_entry(n))) == _entry(n)
    hash_only = _entry(3)._replace(cert_type=None, iat=None, exp=None, uci=None, country_uci=None)
    assert decode(encode(hash_only)) == hash_only
    reissue = _entry(4)._replace(rpc="Reissue", replaces=b"r" * 16)
    assert decode(encode(reissue)) == reissue
    with pytest.raises(ValueError, match=r"does not decode|wrong length"):
        decode(encode(reissue)[:-3])
