"""Overload (issue 9 §7) on a real appliance: 48 clients send batches of 1000 with 2 s deadlines
for 8 s, several times what two workers can sign (``tests/overload.py``; figures of longer runs
in docs/performance.md).

What must hold:
- beyond capacity the answer is RESOURCE_EXHAUSTED, at once, not a queue that runs the callers
  into their deadlines: refusals outnumber everything else, their median comes far below the
  deadline, and few admitted batches end DEADLINE_EXCEEDED;
- callers that have gone get nothing: every signature the workers made is either recorded in
  the ledger for an answered batch or counted as discarded, the discarded ones are a small share,
  and the ledger holds no more than the items answered OK plus the items of batches whose
  callers saw DEADLINE_EXCEEDED (a batch recorded in the last moment before its deadline whose
  answer then came too late: over-recording, never a missing record);
- memory stays bounded: the front's and the workers' RSS grow by a bounded amount.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance, wait_serving
from tests.overload import FLOOD_CONFIG, FloodReport, flood

pytestmark = pytest.mark.timeout(600)

BATCH = 1000
MIB = 1 << 20


@pytest.fixture(scope="module")
def flooded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Appliance, FloodReport]]:
    require_softhsm()
    directory = tmp_path_factory.mktemp("overload")
    running, process = start_appliance(directory, FLOOD_CONFIG)
    try:
        wait_serving(running)
        report = flood(
            running.address, running.metrics_port, process.pid,
            directory / "dev" / "ledger.sqlite", clients=48, seconds=8.0, batch=BATCH,
            deadline=2.0,
        )  # fmt: skip
        yield running, report
    finally:
        stop_appliance(process)


def test_beyond_capacity_the_answer_is_resource_exhausted_at_once(
    flooded: tuple[Appliance, FloodReport],
) -> None:
    report = flooded[1]
    print(report.text())
    assert set(report.calls) <= {"OK", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}, report.text()
    assert report.calls["OK"] > 0, report.text()
    assert report.calls["RESOURCE_EXHAUSTED"] > report.calls["OK"], report.text()
    # far below the 2 s deadline: the refusal does not wait for the queue
    assert report.percentile("RESOURCE_EXHAUSTED", 0.5) < 0.5, report.text()
    # admission keeps the queue short enough that admitted batches are answered in time
    assert report.calls["DEADLINE_EXCEEDED"] <= report.calls["OK"] / 2, report.text()


def test_callers_that_have_gone_get_nothing_signed_or_recorded(
    flooded: tuple[Appliance, FloodReport],
) -> None:
    report = flooded[1]
    # every signature is accounted for: recorded for an answered batch, or discarded
    assert report.signatures == report.records + report.discarded, report.text()
    assert report.discarded <= report.signatures / 4, report.text()
    assert report.records >= report.ok_items, report.text()
    assert report.records - report.ok_items <= report.calls["DEADLINE_EXCEEDED"] * BATCH, (
        report.text()
    )


def test_memory_stays_bounded_under_the_flood(flooded: tuple[Appliance, FloodReport]) -> None:
    report = flooded[1]
    assert max(report.front_rss) - report.front_rss[0] < 300 * MIB, report.text()
    assert max(report.workers_rss) - report.workers_rss[0] < 64 * MIB, report.text()
