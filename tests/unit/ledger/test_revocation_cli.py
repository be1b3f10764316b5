"""``signer audit revoke`` and ``signer audit revocations`` through ``main()``, on a real SQLite
ledger and on a real PostgreSQL database, with officer keys made for the test."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from signer.cli import main
from signer.hcert.revocation import truncated_sha256
from signer.keys.officers import create_officer
from signer.ledger.postgres import PostgresLedger
from signer.ledger.records import encode
from signer.ledger.sqlite import SqliteLedger
from signer.ledger.store import LedgerStore, open_sql
from tests.officers import signed_roster
from tests.unit.ledger.test_revocations import T0, entry

KID_A, KID_B = b"kid-000A", b"kid-000B"
COUNT_A, COUNT_B = 1001, 202


@dataclass(frozen=True)
class Setup:
    config: Path
    ledger: str  # a SQLite file or a PostgreSQL URL
    alice: Path  # an officer key in the roster
    mallory: Path  # an Ed25519 key that is not


@pytest.fixture(params=["sqlite", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Setup:
    """1001 certificates under kid A for clinic-1, then 202 under kid B for clinic-2, one a
    second apart; record n has the UVCI URN:UVCI:01:VN:REV<n> and exp T0 + n."""
    roster = tmp_path / "roster"
    pin, _ = signed_roster(roster, "alice", "bob")
    alice = roster / "alice.key.pem"
    mallory = create_officer(tmp_path / "elsewhere", "mallory")
    store: LedgerStore
    if request.param == "postgres":
        ledger = request.getfixturevalue("postgres").new_database()
        store, where = PostgresLedger(ledger, "replica-a"), f'url = "{ledger}"'
    else:
        ledger = str(tmp_path / "ledger.sqlite")
        store, where = SqliteLedger(Path(ledger), "replica-a"), f'path = "{ledger}"'
    entries = [entry(n, exp=T0 + n, kid=KID_A) for n in range(COUNT_A)] + [
        entry(n, exp=T0 + n, kid=KID_B)._replace(client="clinic-2")
        for n in range(COUNT_A, COUNT_A + COUNT_B)
    ]
    store.append([(e.signature, encode(e)) for e in entries])
    store.close()
    config = tmp_path / "signer.toml"
    config.write_text(
        f'[issuer]\ncountry = "VN"\n[officers]\ndirectory = "{roster}"\nroster_sha256 = "{pin}"\n'
        f"[ledger]\n{where}\n"
    )
    return Setup(config, ledger, alice, mallory)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _revoke(capsys: pytest.CaptureFixture[str], setup: Setup, *which: str) -> tuple[int, str, str]:
    return _run(
        capsys, "audit", "revoke", *which, "--reason", "issued in error",
        "--officer-key", str(setup.alice), "--config", str(setup.config),
    )  # fmt: skip


def _export(capsys: pytest.CaptureFixture[str], setup: Setup, *options: str) -> list[dict]:  # type: ignore[type-arg]
    code, out, err = _run(capsys, "audit", "revocations", "--config", str(setup.config), *options)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_revoke_by_uvci_stores_the_officers_signed_record(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    code, out, err = _revoke(capsys, setup, "--uci", "URN:UVCI:01:VN:REV000005")
    assert code == 0, err
    record = json.loads(out)
    assert record["hash_type"] == "UCI" and record["officer"] == "alice"
    assert record["hash"] == _b64(truncated_sha256(b"URN:UVCI:01:VN:REV000005"))
    assert record["reason"] == "issued in error" and record["certificates"] == 1

    code, out, err = _revoke(capsys, setup, "--uci", "URN:UVCI:01:VN:REV000005")
    assert code == 0 and "revoked already" in err and "alice" in err
    assert json.loads(out)["time_us"] == record["time_us"]  # the first record stands
    sql = open_sql(setup.ledger)
    assert sql.rows("SELECT count(*) FROM revocation") == [(1,)]
    sql.close()


def test_revoke_by_signature_hash_takes_base64_and_hex(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    signature = entry(3).signature
    code, out, _ = _revoke(capsys, setup, "--signature-hash", signature.hex())
    assert code == 0 and json.loads(out)["hash"] == _b64(signature)
    code, _, err = _revoke(capsys, setup, "--signature-hash", _b64(signature))
    assert code == 0 and "revoked already" in err


@pytest.mark.parametrize(
    ("which", "message"),
    [
        (("--uci", "URN:UVCI:01:VN:NEVER-ISSUED"), "has no record of UVCI"),
        (("--uci", "01:VN:REV000005"), "has no record of UVCI"),  # without URN:UVCI:
        (("--signature-hash", _b64(bytes(16))), "has no record of SIGNATURE hash"),
        (("--signature-hash", "abc"), "is not 16 bytes in base64 or hex"),
    ],
)
def test_revoke_refuses_what_the_ledger_does_not_know(
    capsys: pytest.CaptureFixture[str], setup: Setup, which: tuple[str, str], message: str
) -> None:
    code, out, err = _revoke(capsys, setup, *which)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
    assert _export(capsys, setup, "--revoked-only") == []


def test_revoke_refuses_a_key_outside_the_roster_and_a_bad_reason(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    base = ["audit", "revoke", "--uci", "URN:UVCI:01:VN:REV000005", "--config", str(setup.config)]
    code, _, err = _run(capsys, *base, "--reason", "x", "--officer-key", str(setup.mallory))
    assert code == 2 and "not in the roster" in err
    code, _, err = _run(capsys, *base, "--reason", "y" * 201, "--officer-key", str(setup.alice))
    assert code == 2 and "--reason" in err


def test_export_batches_per_kid_and_hash_type_at_most_1000(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    batches = _export(capsys, setup)
    shape = [(b["kid"], b["hashType"], len(b["entries"])) for b in batches]
    a, b = _b64(KID_A), _b64(KID_B)
    assert sorted(shape) == sorted(
        [(a, t, n) for t in ("SIGNATURE", "UCI", "COUNTRYCODEUCI") for n in (1000, 1)]
        + [(b, t, COUNT_B) for t in ("SIGNATURE", "UCI", "COUNTRYCODEUCI")]
    )
    for batch in batches:
        assert set(batch) == {"country", "expires", "kid", "hashType", "entries"}
        assert batch["country"] == "VN"
        assert all(len(base64.b64decode(e["hash"])) == 16 for e in batch["entries"])
    signatures = [e["hash"] for x in batches if x["hashType"] == "SIGNATURE" for e in x["entries"]]
    assert sorted(signatures) == sorted(_b64(entry(n).signature) for n in range(COUNT_A + COUNT_B))
    first = next(x for x in batches if x["kid"] == a and len(x["entries"]) == 1000)
    assert first["expires"] == "2023-11-14T22:29:59Z"  # T0 + 999: its latest exp


def test_export_ends_with_one_summary_line_on_stderr(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    """The total is every certificate record of the ledger (key events are not read)."""
    code, out, err = _run(capsys, "audit", "revocations", "--config", str(setup.config))
    assert code == 0, err
    total = COUNT_A + COUNT_B
    assert "done:" not in out  # stdout carries the batches alone
    [summary] = [line for line in err.splitlines() if line.startswith("done:")]
    assert summary.startswith(f"done: {total:,} of {total:,} records in ")
    assert summary.endswith(f": {total:,} certificate(s) in {len(out.splitlines())} batch(es)")


def test_export_filters_by_client_kid_and_time(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    by_client = _export(capsys, setup, "--client", "clinic-2", "--hash-type", "SIGNATURE")
    assert [(b["kid"], len(b["entries"])) for b in by_client] == [(_b64(KID_B), COUNT_B)]
    by_kid = _export(capsys, setup, "--kid", KID_A.hex(), "--hash-type", "UCI")
    assert [(b["kid"], len(b["entries"])) for b in by_kid] == [
        (_b64(KID_A), 1000),
        (_b64(KID_A), 1),
    ]
    window = _export(
        capsys, setup, "--from", "2023-11-14T22:13:30Z", "--to", "2023-11-14T22:13:40Z",
        "--hash-type", "SIGNATURE",
    )  # fmt: skip  # T0 + 10 up to T0 + 20, exclusive
    assert [e["hash"] for e in window[0]["entries"]] == [
        _b64(entry(n).signature) for n in range(10, 20)
    ]
    code, _, err = _run(
        capsys, "audit", "revocations", "--config", str(setup.config), "--from", "soon"
    )
    assert code == 2 and "--from" in err


def test_revoked_only_publishes_a_uvci_in_full_and_a_signature_alone(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    assert _revoke(capsys, setup, "--uci", "URN:UVCI:01:VN:REV000005")[0] == 0
    assert _revoke(capsys, setup, "--signature-hash", entry(1100).signature.hex())[0] == 0
    batches = _export(capsys, setup, "--revoked-only")
    got = {(b["kid"], b["hashType"]): (b["entries"], b["expires"]) for b in batches}
    five = entry(5)
    assert got == {
        (_b64(KID_A), "SIGNATURE"): ([{"hash": _b64(five.signature)}], "2023-11-14T22:13:25Z"),
        (_b64(KID_A), "UCI"): ([{"hash": _b64(five.uci or b"")}], "2023-11-14T22:13:25Z"),
        (_b64(KID_A), "COUNTRYCODEUCI"): (
            [{"hash": _b64(five.country_uci or b"")}],
            "2023-11-14T22:13:25Z",
        ),
        (_b64(KID_B), "SIGNATURE"): (
            [{"hash": _b64(entry(1100).signature)}],
            "2023-11-14T22:31:40Z",
        ),
    }


def test_an_edited_revocation_stops_the_export(
    capsys: pytest.CaptureFixture[str], setup: Setup, tmp_path: Path
) -> None:
    assert _revoke(capsys, setup, "--uci", "URN:UVCI:01:VN:REV000005")[0] == 0
    sql = open_sql(setup.ledger)
    sql.write("UPDATE revocation SET hash = ?", (truncated_sha256(b"URN:UVCI:01:VN:REV000006"),))
    sql.close()
    out_file = tmp_path / "batches.jsonl"
    code, out, err = _run(
        capsys, "audit", "revocations", "--revoked-only", "--config", str(setup.config),
        "--out", str(out_file),
    )  # fmt: skip
    assert code == 2 and out == "" and "does not carry a valid signature" in err
    assert not out_file.exists()
