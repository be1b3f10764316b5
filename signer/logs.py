"""The appliance's log lines: one format for the front and the workers, and logging that a
client cannot turn into a flood.

:func:`configure` sets up the root logger of a process (issue 11 §2): ``json`` writes one JSON
object a line (python-json-logger) with ``time``, ``level``, ``logger``, ``role`` (front,
worker, dev-setup), ``worker`` (a worker's index), ``pid``, ``message`` and whatever fields the
line adds (the RPC line: ``request_id``, ``client``, ``method``, ``code``, ``items``,
``duration_seconds``); ``text`` is the same line for a console. Every process writes to its own
stderr, which the workers inherit from the front, so one stream carries them all.

Anything a request can trigger over and over (an unexpected error, a refused plausibility check)
goes through :class:`RateLimitedLog` (issue 9 §8: 170 000 fuzzed requests once grew the log by
104 MB, a traceback each). The first line of a kind in an interval is written (with its
traceback, if any); the others are counted, and the next line written says how many were held
back, so nothing is lost from the totals and the log stays small.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

from signer.config import LogConfig

__all__ = ["DEFAULT_INTERVAL_SECONDS", "RateLimitedLog", "configure", "error_kind"]

DEFAULT_INTERVAL_SECONDS = 60.0

_JSON_FIELDS = {"levelname": "level", "name": "logger", "process": "pid", "exc_info": "error"}


class _JsonLines(OrjsonFormatter):
    """python-json-logger's formatter (its orjson flavour: ~15 µs a line less than the json
    one, and orjson is here anyway) with the time first (it appends ``timestamp`` last)."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {"time": log_data.pop("time"), **log_data}


def configure(config: LogConfig, role: str, worker: int | None = None) -> None:
    """This process's log lines go to stderr in ``config.format`` from ``config.level`` up;
    ``role`` and ``worker`` say which process wrote a line. Replaces any earlier set-up."""
    handler = logging.StreamHandler(sys.stderr)
    fields: dict[str, Any] = {"role": role}
    if worker is not None:
        fields["worker"] = worker
    if config.format == "json":
        handler.setFormatter(
            _JsonLines(
                "{levelname}{name}{process}{message}",
                style="{",
                rename_fields=_JSON_FIELDS,
                static_fields=fields,
                timestamp="time",
            )
        )
    else:
        who = role if worker is None else f"{role}-{worker}"
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {who} %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level.upper())
    logging.captureWarnings(True)  # warnings.warn(...) as log lines of the same format


#: Kinds remembered at most; past it the oldest are forgotten (a kind is built from an exception
#: type and a place in the code, so this is far more than real code has).
_MAX_KINDS = 1024


class RateLimitedLog:
    """A wrapper around a :class:`logging.Logger` that writes at most one line per ``kind`` per
    ``interval`` seconds. Runs on one thread (the front's event loop, or a worker's only
    thread), so it needs no lock."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._kinds: dict[str, tuple[float, int]] = {}  # kind → (when last written, held back)

    def log(
        self, level: int, kind: str, message: str, *args: object, exc_info: bool = False
    ) -> bool:
        """Write ``message % args`` unless a line of ``kind`` was written less than ``interval``
        seconds ago; return whether it was written."""
        now = self._clock()
        last = self._kinds.get(kind)
        if last is not None and now - last[0] < self._interval:
            self._kinds[kind] = (last[0], last[1] + 1)
            return False
        held = last[1] if last is not None else 0
        if held:
            message += f" ({held} more like this held back in the last {self._interval:g} s)"
        if last is None and len(self._kinds) >= _MAX_KINDS:
            del self._kinds[next(iter(self._kinds))]
        self._kinds[kind] = (now, 0)
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True

    def error(self, kind: str, message: str, *args: object, exc_info: bool = False) -> bool:
        return self.log(logging.ERROR, kind, message, *args, exc_info=exc_info)

    def warning(self, kind: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, kind, message, *args)


def error_kind(where: str, error: BaseException) -> str:
    """A kind for an unexpected exception: where it was caught, its type and the innermost frame
    it was raised in (so two different bugs are two kinds, one bug repeated is one)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    frame = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
    return f"{where}:{type(error).__name__}:{frame}"
