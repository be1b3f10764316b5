"""Progress of a long CLI run on stderr: items done, of how many, rate, elapsed time, ETA
(issue 11 §7), for ``sign``, ``reissue``, ``bench`` and ``audit revocations``.

Progress never goes to stdout, where the results are. On a terminal the status line is redrawn in
place at most every half second; anywhere else (a log file, CI, a pipe) it is a whole line at
most every :data:`QUIET_EVERY` seconds, so an hour's run leaves some 700 lines in a log, not one
per batch. The run ends with one summary line, always written: how many items of how many, in
how long, at what rate, and the caller's outcome counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

#: Seconds between status lines when stderr is not a terminal.
QUIET_EVERY = 5.0
#: Seconds between redraws of the status line on a terminal.
TERMINAL_EVERY = 0.5
_CLEAR_TO_END = "\x1b[K"


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``: short, and wide enough to read at a glance."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class Progress:
    """Status lines for one run of ``total`` items (None: not known, e.g. stdin) on ``stream``
    (None: silent, ``--quiet``). ``clock`` and ``every`` are for tests."""

    def __init__(
        self,
        stream: IO[str] | None,
        *,
        total: int | None = None,
        noun: str = "items",
        clock: Callable[[], float] = time.monotonic,
        every: float | None = None,
    ) -> None:
        self._stream = stream
        self._terminal = stream is not None and stream.isatty()
        self._every = (
            every if every is not None else TERMINAL_EVERY if self._terminal else QUIET_EVERY
        )
        self.total = total
        self._noun = noun
        self._clock = clock
        self._started = self._last = clock()

    def elapsed(self) -> float:
        return self._clock() - self._started

    def status(self, done: int, detail: str = "") -> str:
        """``1,200 of 5,000 items (24 %), 400/s, 3 s elapsed, ETA 10 s: <detail>``."""
        elapsed = self.elapsed()
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{done:,} of {self.total:,} {self._noun}" if self.total is not None else ""
        if self.total:
            text += f" ({100 * done / self.total:.0f} %)"
        elif self.total is None:
            text = f"{done:,} {self._noun}"
        text += f", {rate:,.0f}/s, {duration(elapsed)} elapsed"
        if self.total is not None and done < self.total:
            eta = (self.total - done) / rate if rate > 0 else None
            text += f", ETA {duration(eta)}" if eta is not None else ", ETA unknown"
        return text + (f": {detail}" if detail else "")

    def summary(self, done: int, detail: str = "") -> str:
        """``done: 5,000 of 5,000 items in 12 s (417/s): <detail>``."""
        elapsed = self.elapsed()
        rate = done / elapsed if elapsed > 0 else 0.0
        of = f" of {self.total:,}" if self.total is not None else ""
        text = f"done: {done:,}{of} {self._noun} in {duration(elapsed)} ({rate:,.0f}/s)"
        return text + (f": {detail}" if detail else "")

    def update(self, done: int, detail: str = "") -> None:
        """Show the status if the last one is old enough (cheap to call per batch)."""
        now = self._clock()
        if self._stream is None or now - self._last < self._every:
            return
        self._last = now
        if self._terminal:
            self._stream.write("\r" + self.status(done, detail) + _CLEAR_TO_END)
        else:
            self._stream.write(self.status(done, detail) + "\n")
        self._stream.flush()

    def finish(self, done: int, detail: str = "") -> None:
        """The one summary line (over the status line on a terminal)."""
        if self._stream is None:
            return
        start = "\r" if self._terminal else ""
        end = _CLEAR_TO_END + "\n" if self._terminal else "\n"
        self._stream.write(start + self.summary(done, detail) + end)
        self._stream.flush()
