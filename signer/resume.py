"""``--resume``: carry on a ``sign`` / ``reissue`` run from its output file (issue 9 §10).

The output is one JSON line per input line, ``{"line": N, …}``, written in input order and
flushed after every batch. A run stopped part-way (killed, the machine lost) leaves whole lines
and perhaps a last line cut short. Resuming keeps the whole lines, cuts the partial one off, and
sends only the input lines the file does not answer yet, so no line is signed twice into the
output. What the killed run had in flight (at most the client's window of batches, see
``signer.client``) was signed but never written: those lines are signed again, and the ledger
holds both records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from signer.errors import ConfigError


@dataclass(frozen=True)
class Answered:
    """The input lines an output file answers already, and how many of them were rejected."""

    lines: frozenset[int] = frozenset()
    rejected: int = 0

    def pending(self, numbered: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        """The (line number, text) pairs still to send."""
        return ((n, text) for n, text in numbered if n not in self.lines)


#: A fresh run: no line answered yet.
NOTHING_ANSWERED = Answered()


def answered_lines(path: Path) -> Answered:
    """Read ``path`` (missing = nothing answered yet) and cut off a last line without its line
    break; a whole line that is not a result of ours is refused rather than guessed at."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return NOTHING_ANSWERED
    except OSError as e:
        raise ConfigError(f"--out {path}: cannot resume from it ({e.strerror})") from e
    end = data.rfind(b"\n") + 1
    lines: set[int] = set()
    rejected = 0
    for number, raw in enumerate(data[:end].splitlines(), start=1):
        line = _result_line(raw)
        if line is None or line[0] in lines:
            raise ConfigError(
                f"--out {path}: line {number} is not a result line of 'signer sign' or "
                "'signer reissue' (or repeats one); not resuming from this file"
            )
        lines.add(line[0])
        rejected += line[1]
    if end < len(data):
        _cut_to(path, end)  # the line the stopped run was writing
    return Answered(frozenset(lines), rejected)


def _cut_to(path: Path, size: int) -> None:
    try:
        with path.open("r+b") as f:
            f.truncate(size)
    except OSError as e:
        raise ConfigError(f"--out {path}: cannot cut its last partial line ({e.strerror})") from e


def _result_line(raw: bytes) -> tuple[int, bool] | None:
    """(input line number, rejected) of one output line; None when it is not one."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    number = value.get("line")
    if type(number) is not int or number < 1 or ("hc1" in value) == ("errors" in value):
        return None
    return number, "errors" in value
