"""The rate-limited log: one line per kind per interval, the rest counted and reported."""

from __future__ import annotations

import logging

import pytest

from signer.logs import RateLimitedLog, error_kind


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_kind_per_interval_and_the_count_of_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("test.logs"), interval=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.logs"):
        written = [limited.warning("a", "kind a %d", i) for i in range(1000)]
        written.append(limited.warning("b", "kind b"))
        clock.now += 59.9
        written.append(limited.warning("a", "kind a again"))
        clock.now += 0.1
        written.append(limited.warning("a", "kind a after the interval"))
    assert written.count(True) == 3
    assert [r.getMessage() for r in caplog.records] == [
        "kind a 0",
        "kind b",
        "kind a after the interval (1000 more like this held back in the last 60 s)",
    ]


def test_a_traceback_is_written_only_with_the_line_that_is_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limited = RateLimitedLog(logging.getLogger("test.logs.tb"), clock=Clock())
    with caplog.at_level(logging.ERROR, logger="test.logs.tb"):
        for _ in range(100):
            try:
                int("not a number")
            except ValueError as e:
                limited.error(error_kind("SignBatch", e), "unexpected", exc_info=True)
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None


def test_two_bugs_are_two_kinds() -> None:
    def first() -> None:
        raise ValueError("one")

    def second() -> None:
        raise ValueError("two")

    kinds = set()
    for function in (first, second, first):
        try:
            function()
        except ValueError as e:
            kinds.add(error_kind("Verify", e))
    assert len(kinds) == 2


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configure_writes_one_line_in_the_format_asked(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from signer.config import LogConfig
    from signer.logs import configure

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure(LogConfig(level="info", format=fmt), "worker", 3)
        logging.getLogger("test.configure").info("a %s", "line\nwith a newline", extra={"items": 7})
        logging.getLogger("test.configure").debug("below the level")
        lines = capsys.readouterr().err.splitlines()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    if fmt == "json":
        assert len(lines) == 1
        entry = json.loads(lines[0])
        assert next(iter(entry)) == "time"
        assert entry["message"] == "a line\nwith a newline"
        assert (entry["level"], entry["role"], entry["worker"], entry["items"]) == (
            "INFO", "worker", 3, 7
        )  # fmt: skip
    else:
        assert " worker-3 INFO test.configure: a line" in lines[0]
        assert not any("below the level" in line for line in lines)
