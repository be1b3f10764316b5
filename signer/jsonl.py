"""Input files as ``signer sign`` and ``signer validate`` read them: one record per line,
numbered from 1, blank lines skipped (they keep their numbers), and bytes that are not UTF-8
reported against their line instead of stopping the run."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from signer.domain import ItemError


def open_text(path: Path) -> IO[str]:
    """``path`` opened for reading: a byte that is not UTF-8 becomes a surrogate, for
    :func:`not_utf8` to report, so one bad line does not end the file."""
    return path.open(encoding="utf-8", errors="surrogateescape")


def stdin_text() -> IO[str]:
    """Standard input, read as :func:`open_text` reads a file."""
    sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")  # type: ignore[union-attr]
    return sys.stdin


def records(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, text) per non-blank line, the line break stripped."""
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield number, text


def not_utf8(number: int, text: str) -> ItemError | None:
    """The ``utf8`` error of a line that held bytes the UTF-8 reader could not decode."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = ord(text[e.start]) - 0xDC00  # surrogateescape keeps byte b as U+DC00 + b
        return ItemError(
            "utf8",
            "",
            f"line {number} is not UTF-8 text (byte 0x{byte:02x} at character {e.start + 1}); "
            "save the file as UTF-8",
        )
    return None
