"""signer.progress on a fake clock: the status and summary lines, the ETA arithmetic, and how
often lines are written on a terminal and elsewhere."""

from __future__ import annotations

import io

import pytest

from signer.progress import QUIET_EVERY, TERMINAL_EVERY, Progress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (0.4, "0 s"), (59.4, "59 s"), (60, "1 min 00 s"), (185, "3 min 05 s"),
     (3599, "59 min 59 s"), (3600, "1 h 00 min"), (7625, "2 h 07 min"), (-3, "0 s")],
)  # fmt: skip
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_status_with_a_total_has_share_rate_elapsed_and_eta() -> None:
    clock = Clock()
    meter = Progress(io.StringIO(), total=5000, clock=clock)
    clock.now += 3
    # 1200 in 3 s = 400/s; 3800 left at 400/s = 9.5 s → 10 s
    assert meter.status(1200, "1,198 signed, 2 rejected") == (
        "1,200 of 5,000 items (24 %), 400/s, 3 s elapsed, ETA 10 s: 1,198 signed, 2 rejected"
    )
    clock.now += 120
    assert (
        meter.status(2460)
        == "2,460 of 5,000 items (49 %), 20/s, 2 min 03 s elapsed, ETA 2 min 07 s"
    )


def test_status_without_a_total_has_no_share_and_no_eta() -> None:
    clock = Clock()
    meter = Progress(io.StringIO(), noun="records", clock=clock)
    clock.now += 4
    assert meter.status(10_000) == "10,000 records, 2,500/s, 4 s elapsed"


def test_eta_is_unknown_before_the_first_item_and_absent_when_done() -> None:
    clock = Clock()
    meter = Progress(io.StringIO(), total=10, clock=clock)
    clock.now += 2
    assert meter.status(0).endswith("ETA unknown")
    assert "ETA" not in meter.status(10)
    assert (
        Progress(io.StringIO(), total=0, clock=clock).status(0) == "0 of 0 items, 0/s, 0 s elapsed"
    )


def test_summary_names_the_total() -> None:
    clock = Clock()
    meter = Progress(io.StringIO(), total=1000, clock=clock)
    clock.now += 8
    assert meter.summary(1000, "998 signed, 2 rejected") == (
        "done: 1,000 of 1,000 items in 8 s (125/s): 998 signed, 2 rejected"
    )
    assert Progress(None, clock=clock).summary(7) == "done: 7 items in 0 s (0/s)"


def test_not_a_terminal_one_whole_line_every_few_seconds_then_the_summary() -> None:
    clock, stream = Clock(), io.StringIO()
    meter = Progress(stream, total=100, clock=clock)
    for done in range(1, 101):  # one update per item, 0.25 s apart: 25 s
        clock.now += 0.25
        meter.update(done)
    meter.finish(100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == int(25 / QUIET_EVERY) + 1  # every 5 s, then the summary
    assert lines[0].startswith("20 of 100 items (20 %), 4/s, 5 s elapsed, ETA 20 s")
    assert lines[-1] == "done: 100 of 100 items in 25 s (4/s)"
    assert "\r" not in stream.getvalue()


def test_terminal_redraws_one_line_in_place_and_ends_it_with_the_summary() -> None:
    clock, stream = Clock(), Terminal()
    meter = Progress(stream, total=10, clock=clock)
    for done in range(1, 11):
        clock.now += TERMINAL_EVERY
        meter.update(done)
    meter.finish(10, "10 signed, 0 rejected")
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") == 11  # ten redraws and the summary over them
    assert (
        text.rsplit("\r", 1)[1]
        == "done: 10 of 10 items in 5 s (2/s): 10 signed, 0 rejected\x1b[K\n"
    )


def test_quiet_writes_nothing() -> None:
    clock = Clock()
    meter = Progress(None, total=3, clock=clock, every=0)
    clock.now += 1
    meter.update(1)
    meter.finish(3)  # nothing to write to, nothing raised
