"""One chunk of input lines → one :class:`Checked` per non-blank line (runs in worker processes).

The per-item check is ``SigningService.check_json`` itself, not a copy: the size limit, the
JSON parse and ``validate_payload`` with the config's policy. The service's registry is never
touched by that stage, so the offline path builds the service without one.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import NamedTuple, cast

from signer.config import Config
from signer.domain import ItemError, ItemResult, SignItem
from signer.jsonl import not_utf8
from signer.keys.registry import KeyRegistry
from signer.service import ALL_TYPES, SigningService

#: Codes only ``signer validate`` gives: the file, not the payload, is at fault.
VALIDATE_ERROR_CODES: dict[str, str] = {
    "utf8": "signer validate: the line is not UTF-8 text; the file goes on with the next line.",
}

#: (code, JSON pointer) pairs of one rejected record, for the summary and the CSV.
Faults = tuple[tuple[str, str], ...]


class Checked(NamedTuple):
    """The outcome of one line: its output JSON line, and what the parent needs besides."""

    line: int
    text: str  # the JSON output line, without newline
    faults: Faults  # empty when valid
    uvci: str | None  # set only for a valid record with a well-formed UVCI
    uvci_path: str  # JSON pointer of its ci, for a duplicate_uvci error


def error_json(error: ItemError) -> dict[str, str]:
    return {"code": error.code, "path": error.path, "message": error.message}


def rejected_line(line: int, errors: Sequence[ItemError]) -> str:
    return json.dumps(
        {"line": line, "id": str(line), "errors": [error_json(e) for e in errors]},
        ensure_ascii=False,
    )


class _Checker:
    """The signing service's JSON stage, set up once per process."""

    def __init__(self, config: Config) -> None:
        # check_json only reads the config; the registry matters only when signing.
        self._service = SigningService(config, cast(KeyRegistry, None))

    def check(self, line: int, text: str, now: dt.datetime) -> Checked:
        if (error := not_utf8(line, text)) is not None:
            return Checked(line, rejected_line(line, [error]), (("utf8", ""),), None, "")
        outcome = self._service.check_json(SignItem(str(line), text), now, ALL_TYPES)
        if isinstance(outcome, ItemResult):
            faults = tuple((e.code, e.path) for e in outcome.errors)
            return Checked(line, rejected_line(line, outcome.errors), faults, None, "")
        warnings = [error_json(w) for w in outcome.warnings]
        record = {"line": line, "id": str(line), "valid": True, "warnings": warnings}
        text = json.dumps(record, ensure_ascii=False)
        return Checked(line, text, (), outcome.uvci, outcome.uvci_path)


_checker: _Checker | None = None


def init_worker(config: Config) -> None:
    """Pool initializer: build the checker once per worker process."""
    global _checker  # noqa: PLW0603 - one checker per process, as the pool runs it
    _checker = _Checker(config)


def check_chunk(job: tuple[Sequence[tuple[int, str]], dt.datetime]) -> list[Checked]:
    """Check ``(line number, text)`` pairs, all at the same instant ``now``."""
    lines, now = job
    if _checker is None:
        raise RuntimeError("init_worker was not called in this process")
    return [_checker.check(line, text, now) for line, text in lines]
