"""Stream a JSONL file through worker processes, chunk by chunk; write results in input order.

Memory stays flat: the parent reads one chunk at a time and keeps at most two chunks per worker
in flight, and the UVCIs seen so far live in a scratch SQLite file, not in memory. Duplicate
UVCIs are the one cross-record rule, so the parent decides them, in input order, over the whole
file (``signer sign`` sends the file in batches and checks each batch; a repeat across batches
is as wrong, so it is reported here too).
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
import multiprocessing
import multiprocessing.pool
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from signer.config import Config
from signer.domain import ItemError
from signer.jsonl import records
from signer.validate._check import Checked, check_chunk, init_worker, rejected_line
from signer.validate._report import CsvErrors
from signer.validate._summary import Summary

CHUNK_LINES = 2000
_Job = tuple["multiprocessing.pool.AsyncResult[list[Checked]]", int]


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


class _Uvcis:
    """The first line of each valid record's UVCI over the whole file, in a scratch SQLite file:
    memory stays flat however many records (a dict took ~120 bytes per UVCI, 12 GB for a
    register of 100 M). Keys are 16-byte BLAKE2b digests (UVCIs differing only in "#<check>" are
    the same, as for ``find_duplicate_uvcis``): a false repeat needs a 128-bit collision."""

    def __init__(self, directory: Path) -> None:
        self._db = sqlite3.connect(directory / "uvcis.sqlite", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")  # scratch data: gone with the run
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE first (key BLOB PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID"
        )

    def duplicates(self, checked: list[Checked]) -> list[Checked]:
        """``checked`` with each repeat of an earlier valid record's UVCI turned into a
        ``duplicate_uvci`` error, as ``SigningService`` does within a batch."""
        keys = {item.line: _key(item.uvci) for item in checked if item.uvci is not None}
        if not keys:
            return checked
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT INTO first VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            [(key, line) for line, key in keys.items()],
        )
        unique = list(set(keys.values()))
        marks = ", ".join("?" * len(unique))
        query = f"SELECT key, line FROM first WHERE key IN ({marks})"  # noqa: S608 - ? only
        first = dict(self._db.execute(query, unique))
        self._db.execute("COMMIT")
        out = []
        for item in checked:
            earlier = first[keys[item.line]] if item.uvci is not None else item.line
            if earlier == item.line:
                out.append(item)
                continue
            message = (
                f'ci "{item.uvci}" repeats the UVCI of item {str(earlier)!r} in this file; '
                "each certificate needs its own UVCI"
            )
            error = ItemError("duplicate_uvci", item.uvci_path, message)
            faults = (("duplicate_uvci", item.uvci_path),)
            out.append(Checked(item.line, rejected_line(item.line, [error]), faults, None, ""))
        return out

    def close(self) -> None:
        self._db.close()


def _key(uvci: str) -> bytes:
    return hashlib.blake2b(uvci.partition("#")[0].encode(), digest_size=16).digest()


class Progress:
    """Records done, rate and ETA on stderr: often on a terminal, every ~2 s otherwise."""

    def __init__(
        self, stream: IO[str] | None, total_bytes: int | None, every: float | None = None
    ) -> None:
        self._stream = stream
        self._tty = stream is not None and stream.isatty()
        self._every = every if every is not None else 0.2 if self._tty else 2.0
        self._total = total_bytes
        self._started = self._last = time.monotonic()

    def update(self, records: int, done_bytes: int, final: bool = False) -> None:
        now = time.monotonic()
        if self._stream is None or (not final and now - self._last < self._every):
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        text = f"{records} records, {records / elapsed:,.0f}/s"
        if self._total and done_bytes and not final:
            eta = elapsed * (self._total - done_bytes) / done_bytes
            text += f", ETA {eta:.0f} s"
        end = "\n" if final or not self._tty else ""
        self._stream.write(("\r" if self._tty else "") + text + end)
        self._stream.flush()


def _chunks(source: IO[str]) -> Iterator[tuple[list[tuple[int, str]], int]]:
    items = records(source)
    while chunk := list(itertools.islice(items, CHUNK_LINES)):
        yield chunk, sum(len(text) + 1 for _, text in chunk)


def validate_file(
    source: IO[str],
    config: Config,
    out: IO[str],
    *,
    processes: int,
    csv_out: IO[str] | None = None,
    progress: IO[str] | None = None,
    total_bytes: int | None = None,
) -> Summary:
    """Validate every non-blank line of ``source``; one JSON line each to ``out``, in order."""
    now = dt.datetime.now(dt.UTC)  # one instant for the whole file: the same verdict per run
    summary = Summary()
    scratch = tempfile.TemporaryDirectory(prefix="signer-validate-")
    uvcis = _Uvcis(Path(scratch.name))
    errors = CsvErrors(csv_out) if csv_out is not None else None
    meter = Progress(progress, total_bytes)
    done_bytes = 0

    def emit(checked: list[Checked], size: int) -> None:
        nonlocal done_bytes
        for item in uvcis.duplicates(checked):
            out.write(item.text + "\n")
            summary.add(item.line, item.faults)
            if errors is not None:
                errors.add(item.line, item.faults)
        done_bytes += size
        meter.update(summary.records, done_bytes)

    try:
        _stream(source, config, processes, emit, now)
    finally:
        uvcis.close()
        scratch.cleanup()
    meter.update(summary.records, done_bytes, final=True)
    return summary


def _stream(
    source: IO[str],
    config: Config,
    processes: int,
    emit: Callable[[list[Checked], int], None],
    now: dt.datetime,
) -> None:
    """Check every chunk of ``source`` and hand the results to ``emit`` in input order."""
    if processes <= 1:
        init_worker(config)
        for chunk, size in _chunks(source):
            emit(check_chunk((chunk, now)), size)
    else:
        with multiprocessing.Pool(processes, initializer=init_worker, initargs=(config,)) as pool:
            pending: collections.deque[_Job] = collections.deque()
            for chunk, size in _chunks(source):
                pending.append((pool.apply_async(check_chunk, ((chunk, now),)), size))
                if len(pending) >= 2 * processes:
                    result, done = pending.popleft()
                    emit(result.get(), done)
            while pending:
                result, done = pending.popleft()
                emit(result.get(), done)
