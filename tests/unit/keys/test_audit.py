"""The audit trail's hash chain: intact after appends, broken by an edit or a deletion."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from signer.audit import GENESIS, AuditTrail


def _trail(tmp_path: Path) -> AuditTrail:
    trail = AuditTrail(tmp_path / "audit.jsonl")
    for i, outcome in enumerate(["ok", "proposed", "refused", "executed"]):
        trail.append(
            op="activate",
            officers=["alice"] if i < 2 else ["alice", "bob"],
            label=f"k{i}",
            kid="00" * 8,
            params={"at": 1000 + i},
            outcome=outcome,
            error="no" if outcome == "refused" else None,
        )
    return trail


def test_chain_links_every_line_and_verifies(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    entries = list(trail.entries())
    assert len(entries) == 4
    assert entries[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert {"time", "officers", "op", "label", "kid", "params", "outcome", "error"} <= set(
        entries[0]
    )
    assert trail.verify() == []


def test_edited_line_is_detected(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    lines = trail.path.read_text().splitlines()
    edited = json.loads(lines[2])
    edited["outcome"] = "executed"  # hide a refusal
    lines[2] = json.dumps(edited, sort_keys=True)
    trail.path.write_text("\n".join(lines) + "\n")
    problems = trail.verify()
    assert [p.line for p in problems] == [3]
    assert "hash" in problems[0].message


def test_deleted_line_is_detected(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    lines = trail.path.read_text().splitlines()
    del lines[1]
    trail.path.write_text("\n".join(lines) + "\n")
    problems = trail.verify()
    assert [p.line for p in problems] == [2]
    assert "prev" in problems[0].message


def test_appending_after_verification_continues_the_chain(tmp_path: Path) -> None:
    trail = _trail(tmp_path)
    last = list(trail.entries())[-1]
    entry = trail.append(
        op="retire", officers=["bob"], label="k", kid=None, params={}, outcome="ok"
    )
    assert entry["prev"] == last["hash"]
    assert AuditTrail(trail.path).verify() == []
