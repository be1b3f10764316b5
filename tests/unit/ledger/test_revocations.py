"""Revocation records in a real SQLite ledger: storing, matching a certificate by its SIGNATURE,
UCI or COUNTRYCODEUCI hash, the officer's signature, and the gateway batches built from them."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import sqlite3
from pathlib import Path

import pytest

from signer.errors import RequestError
from signer.hcert.revocation import HashType, truncated_sha256
from signer.keys.officers import OfficerKey, create_officer
from signer.ledger import revocations
from signer.ledger.export import MAX_ENTRIES, BatchBuilder
from signer.ledger.records import Entry, encode
from signer.ledger.revoking import Revocation, parse_hash, published_types, revoked_by
from signer.ledger.sqlite import SqliteLedger, SqliteReader, connect_sql
from tests.officers import unsigned_roster

T0 = 1_700_000_000


def entry(
    n: int, *, uvci: str | None = None, exp: int = T0 + 86400, kid: bytes = b"kid-0001"
) -> Entry:
    uvci = uvci if uvci is not None else f"URN:UVCI:01:VN:REV{n:06d}"
    return Entry(
        (T0 + n) * 1_000_000,
        "clinic-1",
        None,
        "SignBatch",
        kid,
        "ES256",
        "vaccination",
        T0 + n,
        exp,
        truncated_sha256(uvci.encode()),
        truncated_sha256(("VN" + uvci).encode()),
        hashlib.sha256(n.to_bytes(8, "big")).digest()[:16],
        None,
    )


@pytest.fixture
def officer(tmp_path: Path) -> OfficerKey:
    roster = tmp_path / "roster"
    return OfficerKey.load(create_officer(roster, "alice"), unsigned_roster(roster, "alice"))


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """Three certificates; the third is a re-issue of the first (same UVCI, later exp)."""
    path = tmp_path / "ledger.sqlite"
    first = entry(1)
    reissue = entry(3, uvci="URN:UVCI:01:VN:REV000001", exp=T0 + 3 * 86400)._replace(
        replaces=first.signature
    )
    store = SqliteLedger(path, "replica-a")
    store.append([(e.signature, encode(e)) for e in (first, entry(2), reissue)])
    store.close()
    return path


def revoke(
    officer: OfficerKey, hash_type: HashType, hash: bytes, reason: str = "fraud"
) -> Revocation:
    return Revocation.signed(officer, hash_type, hash, reason, T0 * 1_000_000)


def test_a_uvci_revocation_covers_the_certificate_and_its_reissue(
    ledger: Path, officer: OfficerKey
) -> None:
    db = connect_sql(ledger)
    uci = truncated_sha256(b"URN:UVCI:01:VN:REV000001")
    revocations.add(db, revoke(officer, HashType.UCI, uci))
    db.close()

    store = SqliteLedger(ledger, "replica-b")
    originals = {entry(n).signature for n in (1, 2, 3)}
    assert store.revoked(originals) == {entry(1).signature, entry(3).signature}
    store.close()


def test_a_signature_revocation_covers_one_certificate_only(
    ledger: Path, officer: OfficerKey
) -> None:
    db = connect_sql(ledger)
    revocations.add(db, revoke(officer, HashType.SIGNATURE, entry(1).signature))
    assert revocations.revoked_originals(db, {entry(n).signature for n in (1, 2, 3)}) == {
        entry(1).signature
    }
    db.close()


def test_a_countrycodeuci_row_is_matched_too(ledger: Path, officer: OfficerKey) -> None:
    db = connect_sql(ledger)
    revocations.add(db, revoke(officer, HashType.COUNTRYCODEUCI, entry(2).country_uci or b""))
    assert revocations.revoked_originals(db, {entry(n).signature for n in (1, 2, 3)}) == {
        entry(2).signature
    }
    db.close()


def test_a_ledger_without_the_table_has_no_revocations(ledger: Path) -> None:
    """A ledger written before revocations existed, read as it is (read-only)."""
    db = sqlite3.connect(ledger)
    db.execute("DROP TABLE revocation")
    db.close()
    reader = SqliteReader(ledger)
    assert revocations.revocations(reader.sql) == []
    assert revocations.revoked_originals(reader.sql, {entry(1).signature}) == set()
    reader.close()


def test_revoking_twice_keeps_the_first_record(ledger: Path, officer: OfficerKey) -> None:
    db = connect_sql(ledger)
    first = revoke(officer, HashType.SIGNATURE, entry(2).signature, "first reason")
    second = dataclasses.replace(
        revoke(officer, HashType.SIGNATURE, entry(2).signature, "second"), time_us=1
    )
    assert revocations.add(db, first) == first
    assert revocations.add(db, second) == first
    assert revocations.revocations(db) == [first]
    db.close()


def test_the_officer_signature_covers_every_field(tmp_path: Path, officer: OfficerKey) -> None:
    roster = unsigned_roster(tmp_path / "roster", "alice")
    signed = revoke(officer, HashType.UCI, entry(1).uci or b"")
    assert signed.verifies(roster)
    for change in (
        {"reason": "other"},
        {"hash": bytes(16)},
        {"hash_type": HashType.SIGNATURE},
        {"time_us": signed.time_us + 1},
        {"officer": "bob"},
    ):
        assert not dataclasses.replace(signed, **change).verifies(roster), change
    create_officer(tmp_path / "other", "alice")  # same name, another key: not the roster's
    assert not signed.verifies(unsigned_roster(tmp_path / "other", "alice"))


@pytest.mark.parametrize("reason", ["", "   ", "x" * 201, "line\nbreak"])
def test_a_reason_must_be_short_printable_text(officer: OfficerKey, reason: str) -> None:
    with pytest.raises(RequestError):
        revoke(officer, HashType.UCI, bytes(16), reason)


def test_hashes_are_read_as_base64_or_hex() -> None:
    raw = bytes(range(16))
    assert parse_hash(base64.b64encode(raw).decode(), 16, "--signature-hash") == raw
    assert parse_hash(raw.hex(), 16, "--signature-hash") == raw
    assert parse_hash(raw.hex().upper(), 16, "--signature-hash") == raw
    for bad in ("", "not base64!", base64.b64encode(raw[:15]).decode(), raw.hex()[:-2]):
        with pytest.raises(RequestError, match="--signature-hash"):
            parse_hash(bad, 16, "--signature-hash")


def test_matching_prefers_the_broadest_hash_and_publishes_accordingly() -> None:
    e = entry(7)
    assert e.uci is not None and e.country_uci is not None
    assert revoked_by(e, set()) is None
    assert revoked_by(e, {(HashType.SIGNATURE, e.signature)}) is HashType.SIGNATURE
    both = {(HashType.SIGNATURE, e.signature), (HashType.UCI, e.uci)}
    assert revoked_by(e, both) is HashType.UCI
    assert revoked_by(e, {(HashType.UCI, e.signature)}) is None  # the type matters
    assert published_types(HashType.SIGNATURE) == (HashType.SIGNATURE,)
    assert set(published_types(HashType.UCI)) == set(HashType)


def test_batches_split_at_1000_and_expire_with_their_latest_certificate() -> None:
    builder = BatchBuilder("VN")
    written = []
    count = 2 * MAX_ENTRIES + 500
    for n in range(count):
        written += builder.add(entry(n, exp=T0 + n), [HashType.SIGNATURE])
    written += list(builder.finish())
    assert [len(b["entries"]) for b in written] == [1000, 1000, 500]
    for index, batch in enumerate(written):
        last = min(count, (index + 1) * MAX_ENTRIES) - 1
        assert batch["expires"] == _iso(T0 + last)
        assert batch["kid"] == base64.b64encode(b"kid-0001").decode()
        assert batch["hashType"] == "SIGNATURE" and batch["country"] == "VN"
    hashes = [e["hash"] for b in written for e in b["entries"]]
    assert hashes == [base64.b64encode(entry(n).signature).decode() for n in range(count)]


def test_a_shared_uvci_is_listed_once_until_its_last_certificate_expires() -> None:
    builder = BatchBuilder("VN")
    uvci = "URN:UVCI:01:VN:SHARED"
    early = entry(1, uvci=uvci, exp=T0 + 10)
    late = entry(2, uvci=uvci, exp=T0 + 99)
    other_kid = entry(3, uvci=uvci, exp=T0 + 50, kid=b"kid-0002")
    for e in (early, late, other_kid):
        assert builder.add(e, [HashType.UCI, HashType.COUNTRYCODEUCI]) == []
    batches = {(b["kid"], b["hashType"]): b for b in builder.finish()}
    kid1, kid2 = (base64.b64encode(k).decode() for k in (b"kid-0001", b"kid-0002"))
    assert set(batches) == {(k, t) for k in (kid1, kid2) for t in ("UCI", "COUNTRYCODEUCI")}
    assert batches[(kid1, "UCI")]["entries"] == [
        {"hash": base64.b64encode(truncated_sha256(uvci.encode())).decode()}
    ]
    assert batches[(kid1, "UCI")]["expires"] == _iso(T0 + 99)
    assert batches[(kid2, "COUNTRYCODEUCI")]["expires"] == _iso(T0 + 50)


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
