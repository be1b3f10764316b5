"""What the front reports at scrape time, beside the metric files of every process.

In multiprocess mode prometheus_client leaves out the ``process_*`` collector (issue 11 §1:
the workers' CPU and memory were lost), so the front reads every process of the appliance
(itself and each signing worker) with psutil when ``/metrics`` is scraped:
``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``process_open_fds`` and
``process_start_time_seconds`` labelled ``role`` (front, worker) and ``worker`` (its index,
``""`` for the front): bounded by ``[hsm] sessions``, never a pid. The HSM sessions open and in
use, and ``hcert_build_info``, come from the front's own state the same way. Nothing of this
costs the signing path anything: it runs on the metrics server's thread, per scrape.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from importlib import metadata
from typing import TYPE_CHECKING

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from signer.front.pool import WorkerPool

__all__ = ["FrontCollector", "build_labels"]

#: Distributions whose versions ``hcert_build_info`` names (label → distribution).
_VERSIONS = {
    "version": "hcert-signer",
    "grpcio": "grpcio",
    "protobuf": "protobuf",
    "python_pkcs11": "python-pkcs11",
    "cryptography": "cryptography",
}


def build_labels() -> dict[str, str]:
    """The appliance's version, Python's and its main libraries' (``unknown`` if not found)."""
    labels = {"python": platform.python_version()}
    for label, distribution in _VERSIONS.items():
        try:
            labels[label] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            labels[label] = "unknown"
    return labels


class FrontCollector:
    """A prometheus_client collector over the front's pool of workers."""

    def __init__(self, pool: WorkerPool, front_pid: int) -> None:
        self._pool = pool
        self._front_pid = front_pid
        self._build = build_labels()
        self._processes: dict[int, psutil.Process] = {}

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "hcert_build_info",
            "Always 1: the appliance's version and those of Python and its main libraries.",
            labels=sorted(self._build),
        )
        build.add_metric([self._build[k] for k in sorted(self._build)], 1)
        yield build
        yield from self._sessions()
        yield from self._process_metrics()

    def _sessions(self) -> Iterator[Metric]:
        open_, in_use = self._pool.sessions()
        yield GaugeMetricFamily(
            "hcert_hsm_sessions_configured",
            "HSM sessions the appliance runs when all is well ([hsm] sessions: one per worker).",
            value=self._pool.size,
        )
        yield GaugeMetricFamily(
            "hcert_hsm_sessions_open",
            "HSM sessions open now: signing workers logged in.",
            value=open_,
        )
        yield GaugeMetricFamily(
            "hcert_hsm_sessions_in_use",
            "HSM sessions with a chunk at their worker now (the average over time: "
            "rate(hcert_chunk_seconds_sum)).",
            value=in_use,
        )

    def _process_metrics(self) -> Iterator[Metric]:
        labels = ["role", "worker"]
        cpu = CounterMetricFamily(
            "process_cpu_seconds_total", "User and system CPU time of the process.", labels=labels
        )
        rss = GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of the process.", labels=labels
        )
        fds = GaugeMetricFamily(
            "process_open_fds", "Open file descriptors of the process.", labels=labels
        )
        start = GaugeMetricFamily(
            "process_start_time_seconds",
            "Start of the process, seconds since the epoch (a worker restarted starts anew).",
            labels=labels,
        )
        wanted = [(("front", ""), self._front_pid)] + [
            (("worker", str(index)), pid) for index, pid in self._pool.processes()
        ]
        seen = set()
        for names, pid in wanted:
            process = self._process(pid)
            if process is None:
                continue
            seen.add(pid)
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu.add_metric(list(names), times.user + times.system)
                    rss.add_metric(list(names), process.memory_info().rss)
                    fds.add_metric(list(names), process.num_fds())
                    start.add_metric(list(names), process.create_time())
            except psutil.Error:
                continue  # it exited while being read: its successor shows next time
        for pid in set(self._processes) - seen:
            del self._processes[pid]
        yield from (cpu, rss, fds, start)

    def _process(self, pid: int) -> psutil.Process | None:
        process = self._processes.get(pid)
        if process is None:
            try:
                process = psutil.Process(pid)
            except psutil.Error:
                return None
            self._processes[pid] = process
        return process
