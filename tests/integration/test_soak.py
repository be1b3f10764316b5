"""The soak command (issue 9 §11) on a short run: ``signer bench --soak-minutes`` against a real
appliance it starts, with capacity measured for a few seconds and a quarter of a minute at 80 %
of it. The ten-minute run and its result: docs/soak.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import require_softhsm
from tests.integration.helpers import bench_config, run_cli


@pytest.fixture(autouse=True)
def _softhsm() -> None:
    require_softhsm()


def test_a_short_soak_reports_no_error_latency_and_flat_rss(tmp_path: Path) -> None:
    config = bench_config(tmp_path)
    figures_path = tmp_path / "soak.json"
    done = run_cli(
        "bench", "--config", str(config), "--sessions", "2", "--soak-minutes", "0.25",
        "--capacity-seconds", "4", "--window", "5", "--json", str(figures_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(figures_path.read_text())
    assert figures["errors"] == {} and figures["verdict"]["errors"] == 0
    assert figures["worker_restarts"] == 0
    assert figures["capacity_certs_per_s"] > 0 and figures["signed"] > 0
    assert figures["signed"] == figures["calls"] * figures["settings"]["batch"]
    assert set(figures["latency_ms"]) == {"p50", "p90", "p99", "p999", "max"}
    assert 0 < figures["latency_ms"]["p50"] <= figures["latency_ms"]["max"]
    # The RSS of the front and of each worker, sampled at every window.
    assert set(figures["rss_mib"]) == {"front", "worker-0", "worker-1"}
    windows = figures["windows"]
    assert len(windows) >= 3
    for samples in figures["rss_mib"].values():
        assert len(samples) == len(windows) and all(s and s > 10 for s in samples)
    assert "verdict: PASS" in done.stdout
