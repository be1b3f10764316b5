"""The files a CLI command reads and writes, opened with one-line errors (issue 9 §10).

A file that cannot be opened is the operator's to fix, so it is a :class:`ConfigError` naming the
option and the path; ``main()`` prints it as one line and exits 2 (exit 1 means "items
rejected"). Every output is opened before the first request, so nothing is signed into a file
that cannot be written.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from signer.errors import ConfigError
from signer.jsonl import open_text


def open_input(path: Path, option: str = "FILE") -> IO[str]:
    """``path`` for reading as :func:`signer.jsonl.open_text` reads it."""
    try:
        return open_text(path)
    except OSError as e:
        raise _error(option, path, "read", e) from e


def open_binary_input(path: Path, option: str = "FILE") -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as e:
        raise _error(option, path, "read", e) from e


def open_output(
    path: Path, option: str = "--out", *, append: bool = False, newline: str | None = None
) -> IO[str]:
    """``path`` for writing (appending with ``append``), UTF-8."""
    try:
        return path.open("a" if append else "w", encoding="utf-8", newline=newline)
    except OSError as e:
        raise _error(option, path, "write", e) from e


def make_directory(path: Path, option: str) -> Path:
    """``path`` as a directory, created when missing."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _error(option, path, "create", e) from e
    if not path.is_dir():
        raise ConfigError(f"{option} {path}: not a directory")
    return path


def _error(option: str, path: Path, what: str, e: OSError) -> ConfigError:
    return ConfigError(
        f"{option} {path}: cannot {what} it ({e.strerror}); check the path and permissions"
    )
