"""The key-management audit trail: one JSON line per operation, refusals included (issue 4 §5).

Each line is ``{time, officers, op, label, kid, params, outcome, error, prev, hash}`` where
``hash = SHA-256(prev ‖ canonical JSON of the line without hash)`` and ``prev`` is the previous
line's hash (64 zeros for the first): editing, deleting or reordering a line breaks the chain
from there on, which ``signer keys audit --verify`` reports. Appends are serialised with an
exclusive ``flock`` so two officers' CLI runs cannot interleave. The chain makes tampering
evident, not impossible: ship the file to a write-once store (ADR 0005).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signer.errors import ConfigError

GENESIS = "0" * 64


def _canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def chain_hash(prev: str, entry: Mapping[str, Any]) -> str:
    """The hash of a line: over the previous hash and the line without its ``hash`` field."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(prev.encode() + _canonical(body)).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainProblem:
    line: int  # 1-based
    message: str


class AuditTrail:
    """Append-only JSON-lines file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(
        self,
        *,
        op: str,
        officers: Sequence[str],
        label: str,
        kid: str | None,
        params: Mapping[str, Any],
        outcome: str,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Append one line (under an exclusive lock) and return it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as e:
            raise ConfigError(f"cannot open the audit trail {self.path}: {e.strerror}") from e
        with os.fdopen(fd, "r+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            prev = GENESIS
            for line in f:
                if line.strip():
                    prev = str(json.loads(line).get("hash", GENESIS))
            entry: dict[str, Any] = {
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "officers": list(officers),
                "op": op,
                "label": label,
                "kid": kid,
                "params": dict(params),
                "outcome": outcome,
                "error": error,
                "prev": prev,
            }
            entry["hash"] = chain_hash(prev, entry)
            f.write(json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry

    def entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def verify(self) -> list[ChainProblem]:
        """Every broken link: a line that does not parse, names the wrong ``prev``, or whose
        ``hash`` does not match its content. An empty list means the chain is intact."""
        problems: list[ChainProblem] = []
        prev = GENESIS
        if not self.path.exists():
            return problems
        with self.path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as e:
                    problems.append(ChainProblem(number, f"not JSON: {e}"))
                    continue
                if entry.get("prev") != prev:
                    problems.append(ChainProblem(number, "prev does not match the line before"))
                if entry.get("hash") != chain_hash(str(entry.get("prev")), entry):
                    problems.append(ChainProblem(number, "hash does not match the line's content"))
                prev = str(entry.get("hash"))
        return problems
