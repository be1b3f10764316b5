"""``signer health`` and ``signer --version`` (issue 11 §7): against the session appliance, a real
grpc health service (NOT_SERVING, mutual TLS with the appliance's own server credentials), a
closed port and a port that accepts but never answers."""

from __future__ import annotations

import socket
import tomllib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from signer.cli import main
from signer.devtls import DevTls
from signer.front.tls import server_credentials
from tests.conftest import Appliance
from tests.integration.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def health_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["health", *args])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


class HealthServer:
    """A real grpc server with the stock health servicer, plaintext or with credentials."""

    def __init__(self, credentials: grpc.ServerCredentials | None) -> None:
        self.servicer = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self.server)
        if credentials is None:
            port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.address = f"127.0.0.1:{port}"
        self.server.start()

    def set(self, status: int) -> None:
        self.servicer.set("", status)


@pytest.fixture
def plain_health() -> Iterator[HealthServer]:
    server = HealthServer(None)
    yield server
    server.server.stop(None)


@pytest.fixture(scope="module")
def mtls_health(dev_tls: DevTls) -> Iterator[HealthServer]:
    server = HealthServer(server_credentials(dev_tls.tls_config()))
    server.set(health_pb2.HealthCheckResponse.SERVING)
    yield server
    server.server.stop(None)


def test_version_is_the_package_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    result = run_cli("--version", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"signer {project['version']}"


@pytest.mark.parametrize("service", ["", "hcert.signer.v1.Signer"])
def test_the_appliance_is_serving(
    appliance: Appliance, capsys: pytest.CaptureFixture[str], service: str
) -> None:
    assert health_cli(capsys, appliance.address, "--service", service) == (0, "SERVING", "")


def test_a_service_the_appliance_does_not_have(
    appliance: Appliance, capsys: pytest.CaptureFixture[str]
) -> None:
    assert health_cli(capsys, appliance.address, "--service", "no.Such") == (
        1,
        "SERVICE_UNKNOWN",
        "",
    )


def test_as_a_subprocess_the_exit_status_is_the_answer(appliance: Appliance) -> None:
    result = run_cli("health", appliance.address, "--timeout", "10", timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "SERVING"), result.stderr


@pytest.mark.parametrize(
    ("status", "code", "shown"),
    [
        (health_pb2.HealthCheckResponse.SERVING, 0, "SERVING"),
        (health_pb2.HealthCheckResponse.NOT_SERVING, 1, "NOT_SERVING"),
        (health_pb2.HealthCheckResponse.UNKNOWN, 1, "UNKNOWN"),
    ],
)
def test_every_status_but_serving_exits_1(
    plain_health: HealthServer,
    capsys: pytest.CaptureFixture[str],
    status: int,
    code: int,
    shown: str,
) -> None:
    plain_health.set(status)
    assert health_cli(capsys, plain_health.address) == (code, shown, "")


def test_a_closed_port_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    code, out, err = health_cli(capsys, address, "--timeout", "5")
    assert (code, out) == (2, "")
    assert err.startswith(f"error: no health answer from {address}") and "UNAVAILABLE" in err
    assert "\n" not in err


def test_a_port_that_never_answers_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        code, out, err = health_cli(capsys, address, "--timeout", "0.5")
    assert (code, out) == (2, "")
    assert "within 0.5 s (DEADLINE_EXCEEDED" in err


def test_mutual_tls_with_a_client_certificate(
    mtls_health: HealthServer, dev_tls: DevTls, capsys: pytest.CaptureFixture[str]
) -> None:
    files = dev_tls.clients["reader-b"]
    tls = ("--ca", str(dev_tls.ca), "--cert", str(files.cert), "--key", str(files.key))
    assert health_cli(capsys, mtls_health.address, *tls) == (0, "SERVING", "")
    # 127.0.0.1 is in the dev server certificate, and so is localhost: the name it expects
    assert health_cli(capsys, mtls_health.address, *tls, "--server-name", "localhost") == (
        0,
        "SERVING",
        "",
    )
    code, _, err = health_cli(capsys, mtls_health.address, *tls, "--server-name", "other.example")
    assert code == 2 and "UNAVAILABLE" in err


@pytest.mark.parametrize("client", [None, "foreign", "expired"])
def test_mutual_tls_refuses_the_probe_without_a_good_certificate(
    mtls_health: HealthServer,
    dev_tls: DevTls,
    capsys: pytest.CaptureFixture[str],
    client: str | None,
) -> None:
    tls = ["--ca", str(dev_tls.ca)]
    if client is not None:
        files = dev_tls.clients[client]
        tls += ["--cert", str(files.cert), "--key", str(files.key)]
    code, out, err = health_cli(capsys, mtls_health.address, *tls)
    assert (code, out) == (2, "") and "UNAVAILABLE" in err


def test_plaintext_against_mutual_tls_exits_2(
    mtls_health: HealthServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert health_cli(capsys, mtls_health.address)[0] == 2


def test_tls_options_come_from_the_environment(
    mtls_health: HealthServer,
    dev_tls: DevTls,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = dev_tls.clients["issuer-a"]
    monkeypatch.setenv("HCERT_HEALTH_CA", str(dev_tls.ca))
    monkeypatch.setenv("HCERT_HEALTH_CERT", str(files.cert))
    monkeypatch.setenv("HCERT_HEALTH_KEY", str(files.key))
    monkeypatch.setenv("HCERT_HEALTH_SERVER_NAME", "localhost")
    assert health_cli(capsys, mtls_health.address) == (0, "SERVING", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["127.0.0.1"], "has no port"),
        (["127.0.0.1:1", "--server-name", "x"], "--server-name needs --ca"),
        (["127.0.0.1:1", "--timeout", "0"], "--timeout must be more than 0"),
        (["127.0.0.1:1", "--ca", "/nonexistent/ca.pem"], "cannot read it"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = health_cli(capsys, *args)
    assert (code, out) == (2, "") and message in err and "\n" not in err
