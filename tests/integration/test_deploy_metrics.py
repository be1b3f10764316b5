"""Every metric the dashboard and the alert rules query is one the appliance really exports
(issue 11 §3): a real appliance is driven until every family has a series (a signature, an item
error, a quota refusal, a checkpoint), its /metrics is scraped, and the names in every PromQL
expression of deploy/grafana/hcert-signer.json and deploy/prometheus/alerts.yaml are looked up
among the scraped sample names (``_total``, ``_bucket``, ``_sum``, ``_count`` included: the
bare name of a histogram or counter family matches no series in PromQL)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from signer import health
from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.integration.helpers import TEST_PAYLOAD, sign_one, stub, to_json

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/hcert-signer.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yaml"
#: series Prometheus makes itself for every target, not the appliance
PROMETHEUS_OWN = frozenset({"up"})

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (in matchers or grouping clauses), durations or Grafana variables."""
    text = _STRING.sub('""', expression)
    text = _MATCHERS.sub("{}", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    return {n for n in _IDENTIFIER.findall(text) if n.lower() not in _KEYWORDS}


def test_the_extractor_finds_metrics_and_nothing_else() -> None:
    expression = (
        'sum by (le, rpc) (rate(hcert_batch_seconds_bucket{job=~"$job",rpc!="x"}'
        "[$__rate_interval])) / on (job, instance) group_left () max(up == 1) "
        "and hcert_key_state{state='active'} > 30 * 86400 offset 5m"
    )
    assert metric_names(expression) == {"hcert_batch_seconds_bucket", "up", "hcert_key_state"}


def dashboard_expressions() -> list[tuple[str, str]]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r}", target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert match, f"variable {variable['name']}: {query}"
            found.append((f"variable {variable['name']}", match.group(1)))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    rules: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    return [
        (f"alert {rule['alert']}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


@pytest.fixture(scope="module")
def exercised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """A real appliance (the session fixture's set-up) whose rate quota of 1000 items is used up
    by the calls below, so that a quota refusal is counted too."""
    require_softhsm()
    quotas = "[quotas]\nitems_per_second = 0.001\nburst = 1000\n"
    directory = tmp_path_factory.mktemp("metrics")
    (directory / "faults").mkdir()
    running, process = start_appliance(
        directory,
        extra_config=quotas,
        workers=1,
        key_algorithms=["ES256"],
        env={"HCERT_TEST_HSM_FAULTS": str(directory / "faults")},  # an HSM error, counted
    )
    try:
        yield running
    finally:
        stop_appliance(process)


def scrape_names(appliance: Appliance) -> set[str]:
    """Sample names of every family on /metrics, once every event above has been counted."""
    import urllib.request

    with urllib.request.urlopen(
        f"http://127.0.0.1:{appliance.metrics_port}/metrics", timeout=30
    ) as response:
        text = response.read().decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def wait_serving(appliance: Appliance, seconds: float = 60.0) -> None:
    """Until health says SERVING (the ledger's head is matched against the HSM after start)."""
    deadline = time.monotonic() + seconds
    while (status := health.check(appliance.address)) != "SERVING":
        assert time.monotonic() < deadline, f"the appliance stayed {status}"
        time.sleep(0.1)


def drive(appliance: Appliance) -> None:
    wait_serving(appliance)
    assert sign_one(appliance.address, to_json(TEST_PAYLOAD)).HasField("signed")
    assert sign_one(appliance.address, "{").HasField("rejected")  # an item error: json
    # SoftHSM closes the worker's session after 3 more signatures (hsm/_faults.py): an HSM
    # error, counted by its CKR code, and the chunk retried on a new session
    (appliance.directory / "faults" / "close-session").write_text("3")
    payloads = [to_json(p) for p in vaccination_payloads(10, seed=5)]
    signed = stub(appliance.address).SignBatch(
        pb.SignBatchRequest(
            items=[pb.SignItem(id=str(i), payload_json=j) for i, j in enumerate(payloads)]
        ),
        timeout=60,
    )
    assert all(r.HasField("signed") for r in signed.results)
    broken = [pb.SignItem(id=str(i), payload_json="{") for i in range(988)]
    stub(appliance.address).SignBatch(pb.SignBatchRequest(items=broken), timeout=60)
    with pytest.raises(grpc.RpcError) as refused:
        sign_one(appliance.address, to_json(TEST_PAYLOAD))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def exported(exercised: Appliance) -> set[str]:
    drive(exercised)
    names = scrape_names(exercised)
    # what each step must have produced, so that the check below cannot pass on an empty scrape
    assert {
        "hcert_signatures_total",
        "hcert_item_errors_total",
        "hcert_refusals_total",
        "hcert_batch_seconds_bucket",
        "hcert_ledger_checkpoints_total",
        "hcert_hsm_errors_total",
        "hcert_client_refusals_total",
        "hcert_chunk_queue_seconds_bucket",
        "hcert_ledger_write_seconds_bucket",
        "grpc_server_handled_total",
        "process_resident_memory_bytes",
    } <= names
    return names


@pytest.mark.parametrize(
    ("where", "expression"),
    dashboard_expressions() + alert_expressions(),
    ids=lambda value: str(value)[:60],
)
def test_every_queried_metric_is_exported(exported: set[str], where: str, expression: str) -> None:
    names = metric_names(expression)
    assert names, f"{where}: no metric found in {expression!r}"
    unknown = names - exported - PROMETHEUS_OWN
    assert not unknown, f"{where} queries {sorted(unknown)}, which the appliance does not export"


def test_the_dashboard_and_rules_cover_every_exported_family(exported: set[str]) -> None:
    """The other direction: a metric the appliance exports that neither shows nor alerts on."""
    used = set().union(*(metric_names(e) for _, e in dashboard_expressions() + alert_expressions()))
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported if n.startswith("hcert_")}
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    assert families - shown == set()
