"""``signer bench`` on a tiny load (issue 7 §4, §7): the options its figures in
docs/performance.md were measured with — one client connection shared by the requests in flight,
repeated runs with their median, mutual TLS, the fairness phase — against a real appliance it
starts. Figures are not judged here (a benchmark, not a timed test); that the load went through
is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import require_softhsm
from tests.integration.helpers import bench_config, run_cli


@pytest.fixture(autouse=True)
def _softhsm() -> None:
    require_softhsm()


def test_repeated_runs_over_one_mutual_tls_connection_sign_every_item(tmp_path: Path) -> None:
    figures_path = tmp_path / "bench.json"
    done = run_cli(
        "bench", "--config", str(bench_config(tmp_path)), "--sessions", "2", "--seconds", "0.5",
        "--items", "300", "--batch", "50", "--concurrency", "3", "--connections", "1",
        "--runs", "3", "--tls", "--fairness", "5", "--json", str(figures_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(figures_path.read_text())
    # A plaintext client would sign nothing against a server that asks for client certificates.
    assert figures["tls"] == "mutual"
    assert figures["e2e_items"] == 3 * 300 and figures["e2e_rejected"] == 0
    assert figures["connections"] == 1 and figures["concurrency"] == 3
    runs = figures["runs_certs_per_s"]
    assert len(runs) == 3 and all(rate > 0 for rate in runs)
    assert figures["e2e_certs_per_s"] == sorted(runs)[1]  # the median run
    deviation = max(abs(rate - sorted(runs)[1]) for rate in runs) / sorted(runs)[1]
    assert figures["runs_largest_deviation"] == pytest.approx(deviation, abs=0.002)
    assert figures["ratio"] == pytest.approx(sorted(runs)[1] / figures["raw_sig_per_s"], abs=0.002)
    assert "3 runs: " in done.stdout and "over 1 connection(s), TLS: mutual" in done.stdout
    # (e) client B alone and while client A (another certificate) floods
    fairness = figures["fairness"]
    assert fairness["calls"] == 5 and fairness["flood_calls_answered"] > 0
    assert [b["batch"] for b in fairness["b"]] == [1, 100]
    for b in fairness["b"]:
        assert 0 < b["alone_p50_ms"] <= b["alone_p99_ms"]
        assert 0 < b["flooded_p50_ms"] <= b["flooded_p99_ms"]
    assert "(e) fairness: client A flooding" in done.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--tls", "--unary-calls", "10"), "--tls measures phase (b) only"),
        (("--runs", "0"), "must be at least 1"),
        (("--connections", "0"), "must be at least 1"),
        (("--soak-minutes", "1", "--tls"), "--tls and --fairness are for the benchmark"),
        (("--soak-minutes", "1", "--fairness", "5"), "--tls and --fairness are for the benchmark"),
        (("--fairness", "5"), "--fairness needs --tls"),
        (("--tls", "--fairness", "-1"), "--fairness must be 0"),
        (("--fairness", "-1"), "--fairness must be 0"),
    ],
)
def test_contradictory_options_are_a_usage_error(
    tmp_path: Path, options: tuple[str, ...], message: str
) -> None:
    done = run_cli("bench", "--config", str(bench_config(tmp_path)), *options)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
