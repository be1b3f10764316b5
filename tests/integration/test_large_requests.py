"""Large requests in flight on one connection: ``[server] max_concurrent_streams`` bounds the
front's memory.

gRPC reads a request whole before the front's handler sees it, so the memory of a front whose
client keeps many large batches in flight grows with them. Here twenty batches of 8 MB on one
connection, all within the quotas, took the front from ~80 MiB to ~600 MiB without a limit.
With two streams per connection the client's other calls wait in its own gRPC library, and the
front peaked at ~185 MiB. Every call is still answered, each item with exactly one result.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil

from signer.api.v1 import signer_pb2 as pb
from tests.conftest import require_softhsm, start_appliance, stop_appliance, wait_serving
from tests.integration.helpers import stub

MIB = 1 << 20
CALLS = 20
ITEMS = 1000
PAYLOAD_BYTES = 8000  # within max_payload_bytes; not JSON, so every item is rejected cheaply
#: Every batch is admitted at once: only the stream limit keeps them off the front.
ROOMY_QUOTAS = """
[quotas]
max_in_flight_items = 40000
total_in_flight_items = 40000
"""


def test_a_stream_limit_holds_the_front_to_a_few_large_requests(tmp_path: Path) -> None:
    require_softhsm()
    running, process = start_appliance(
        tmp_path / "a", server_config="max_concurrent_streams = 2", extra_config=ROOMY_QUOTAS
    )
    try:
        wait_serving(running)
        front = psutil.Process(process.pid)
        before = front.memory_info().rss
        peak = _Peak(front)
        request = pb.SignBatchRequest(
            items=[pb.SignItem(id=str(i), payload_json="x" * PAYLOAD_BYTES) for i in range(ITEMS)]
        )
        signer = stub(running.address)
        with peak:
            calls = [signer.SignBatch.future(request, timeout=120) for _ in range(CALLS)]
            responses = [call.result() for call in calls]
        for response in responses:
            assert [r.id for r in response.results] == [str(i) for i in range(ITEMS)]
            assert all(r.WhichOneof("outcome") == "rejected" for r in response.results)
            assert {e.code for r in response.results for e in r.rejected.errors} == {"json"}
        # Without the limit it grew by ~510 MiB: the 160 MB of requests at once, three times over.
        grown = f"front RSS {before / MIB:.0f} → {peak.rss / MIB:.0f} MiB"
        assert peak.rss - before < 300 * MIB, grown
    finally:
        stop_appliance(process)


class _Peak:
    """The largest RSS of a process, sampled every 20 ms while the block runs."""

    def __init__(self, process: psutil.Process) -> None:
        self._process = process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.rss = process.memory_info().rss

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.rss = max(self.rss, self._process.memory_info().rss)
