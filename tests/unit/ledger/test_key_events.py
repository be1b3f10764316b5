"""Key events in the ledger (issue 8 §3) on a real SQLite file and the session SoftHSM token:
each append is checkpointed by the audit key at once, a cut key trail stops the next writer, and
a JSON-lines trail of before is imported once, only when its own chain holds."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

from hsm import HsmToken
from signer.ledger.events import KeyEventLog
from signer.ledger.records import decode_event
from signer.ledger.sqlite import SqliteReader
from signer.ledger.store import LedgerError
from signer.ledger.verify import verify_chain

DOMAIN = b"hcert-signer ledger checkpoint v1\x00"  # the checkpoint format, written out here


@pytest.fixture
def log(tmp_path: Path, hsm_token: HsmToken) -> KeyEventLog:
    """A fresh ledger and a chain name of its own (the session token keeps every chain's
    head)."""
    return KeyEventLog(
        str(tmp_path / "ledger.sqlite"), hsm_token, chain=f"events-{secrets.token_hex(4)}"
    )


def _event(log: KeyEventLog, n: int) -> dict[str, Any]:
    return log.append(
        op="activate",
        officers=["alice", "bob"],
        label=f"dsc-{n}",
        kid=None,
        params={"n": n},
        outcome="ok",
    )


def _checkpoint_verifies(reader: SqliteReader, chain: str, hsm_token: HsmToken) -> int:
    """The last checkpoint's seq, after checking its signature with ``cryptography`` over the
    message bytes built here, against the audit key read from the token."""
    found = hsm_token.audit_key(create=False)
    assert found is not None
    public = load_der_public_key(found[1])
    assert isinstance(public, ec.EllipticCurvePublicKey)
    last = reader.checkpoints(chain)[-1]
    head = last.head
    name = chain.encode()
    message = (
        DOMAIN
        + len(name).to_bytes(2, "big")
        + name
        + head.seq.to_bytes(8, "big")
        + head.time_us.to_bytes(8, "big")
        + head.hash
    )
    r, s = last.signature[:32], last.signature[32:]
    public.verify(
        encode_dss_signature(int.from_bytes(r), int.from_bytes(s)),
        message,
        ec.ECDSA(hashes.SHA256()),
    )
    return head.seq


def test_each_event_is_a_record_checkpointed_in_the_hsm(
    log: KeyEventLog, hsm_token: HsmToken
) -> None:
    for n in range(3):
        _event(log, n)
    reader = SqliteReader(Path(log.target))
    try:
        records = list(reader.records(log.chain))
        assert [r.seq for r in records] == [1, 2, 3]
        assert verify_chain(log.chain, records).finding is None
        assert decode_event(records[1].body).fields["label"] == "dsc-1"
        assert _checkpoint_verifies(reader, log.chain, hsm_token) == 3
    finally:
        reader.close()
    assert [e["params"]["n"] for e in log.entries()] == [0, 1, 2]


def test_a_cut_key_trail_stops_the_next_writer(log: KeyEventLog) -> None:
    for n in range(3):
        _event(log, n)
    db = sqlite3.connect(log.target)
    with db:
        db.execute("DELETE FROM issuance WHERE chain = ? AND seq = 3", (log.chain,))
    db.close()
    with pytest.raises(LedgerError, match="does not hold the record 3"):
        _event(log, 4)


def test_a_rewritten_key_trail_stops_the_next_writer(log: KeyEventLog) -> None:
    """Rewritten with recomputed hashes (write access to the file, not the HSM)."""
    from signer.ledger.records import link, pack_event, signature_column

    for n in range(2):
        _event(log, n)
    db = sqlite3.connect(log.target)
    prev = bytes(32)
    with db:
        for seq in (1, 2):
            body = pack_event(1, {"op": "activate", "label": "rogue", "n": seq})
            record = link(log.chain, seq, signature_column(body), body, prev)
            db.execute(
                "UPDATE issuance SET body = ?, signature = ?, prev = ?, hash = ? "
                "WHERE chain = ? AND seq = ?",
                (record.body, record.signature, record.prev, record.hash, log.chain, seq),
            )
            prev = record.hash
    db.close()
    with pytest.raises(LedgerError, match="does not hold the record 2"):
        _event(log, 3)


def _trail(path: Path, count: int) -> str:
    """A JSON-lines trail in the format of before the ledger, hash chain computed here."""
    prev, lines = "0" * 64, []
    for n in range(count):
        line = {
            "time": f"2026-0{1 + n % 9}-01T10:00:00+00:00",
            "officers": ["alice"],
            "op": "generate",
            "label": f"old-{n}",
            "kid": None,
            "params": {"alg": "ES256"},
            "outcome": "ok",
            "error": None,
            "prev": prev,
        }
        canonical = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        line["hash"] = hashlib.sha256(prev.encode() + canonical.encode()).hexdigest()
        prev = str(line["hash"])
        lines.append(json.dumps(line))
    path.write_text("\n".join(lines) + "\n")
    return prev


def test_a_trail_of_before_is_imported_once(log: KeyEventLog, tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    last = _trail(trail, 4)
    assert log.import_trail(trail) == 4
    assert not trail.exists() and (tmp_path / "audit.jsonl.imported").exists()
    events = list(log.entries())
    assert [e["label"] for e in events[:4]] == ["old-0", "old-1", "old-2", "old-3"]
    assert all(e["imported"] for e in events[:4])
    assert events[4]["op"] == "import-trail" and events[4]["params"]["last_hash"] == last
    # the same file put back (a restored backup): recognised, nothing added
    (tmp_path / "audit.jsonl.imported").rename(trail)
    assert log.import_trail(trail) == 4
    assert len(list(log.entries())) == 5
    assert log.import_trail(tmp_path / "nothing.jsonl") == 0


def test_a_broken_trail_is_not_imported(log: KeyEventLog, tmp_path: Path) -> None:
    trail = tmp_path / "audit.jsonl"
    _trail(trail, 3)
    lines = trail.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["outcome"] = "refused"  # the hash no longer matches
    trail.write_text("\n".join([lines[0], json.dumps(edited), lines[2]]) + "\n")
    with pytest.raises(LedgerError, match="broken at line 2"):
        log.import_trail(trail)
    assert trail.exists()
