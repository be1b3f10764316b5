"""Session fixtures: a real SoftHSM token and a real server on 127.0.0.1, started through the CLI.

Under ``CI=true`` a missing SoftHSM or PostgreSQL fails the run instead of skipping
(non-negotiable 2).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hsm import HsmToken, SoftHsm, find_softhsm_module
from signer.api.v1 import signer_pb2 as pb
from signer.api.v1 import signer_pb2_grpc as pb_grpc
from signer.devtls import DevTls, write_dev_tls
from signer.keys.devca import DevCsca
from tests.postgres import PostgresServer, require_postgres

SERVER_START_TIMEOUT = 120.0


def require_softhsm() -> str:
    module = find_softhsm_module()
    if module is None:
        if os.environ.get("CI") == "true":
            pytest.fail("SoftHSM is not installed, and under CI=true that is a failure, not a skip")
        pytest.skip("SoftHSM is not installed (apt-get install softhsm2)")
    return module


@dataclass(frozen=True)
class Appliance:
    address: str
    metrics_port: int
    pids: tuple[int, ...]
    directory: Path
    config_path: Path

    def stub(self) -> pb_grpc.SignerStub:
        return pb_grpc.SignerStub(grpc.insecure_channel(self.address))

    def trust_list(self) -> list[pb.TrustListEntry]:
        return list(self.stub().GetTrustList(pb.GetTrustListRequest()).entries)

    def dsc_by_kid(self) -> dict[bytes, x509.Certificate]:
        return {e.kid: x509.load_der_x509_certificate(e.certificate_der) for e in self.trust_list()}


def start_appliance(
    directory: Path,
    extra_config: str = "",
    workers: int = 2,
    key_algorithms: Sequence[str] = ("ES256", "PS256"),
    *,
    hsm_config: str = "",
    server_config: str = "",
    env: Mapping[str, str] | None = None,
    dev_bootstrap: bool = True,
    own_session: bool = False,
) -> tuple[Appliance, subprocess.Popen[bytes]]:
    """Run ``signer serve`` as a real subprocess with a dev token under ``directory``; the dev
    bootstrap creates one active key per algorithm in ``key_algorithms``. ``hsm_config`` and
    ``server_config`` add lines to ``[hsm]`` and ``[server]``, ``env`` to the server's
    environment; without ``dev_bootstrap`` the config is a production one (``extra_config``
    names the CSCA, officers, ledger, PIN). With ``own_session`` the front leads a process
    group of its own (its workers in it), which ``os.killpg`` ends at once, as a power cut or
    ``kill -9 -PGID`` would."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "signer.toml"
    algorithms = ", ".join(f'"{a}"' for a in key_algorithms)
    config_path.write_text(
        f"""
[server]
port = 0
metrics_port = 0
max_batch = 1000
{server_config}

[hsm]
pin_env = ""
key_refresh_seconds = 1.0
sessions = {workers}
{hsm_config}

[dev]
bootstrap = {"true" if dev_bootstrap else "false"}
directory = "{directory / "dev"}"
key_algorithms = [{algorithms}]

[[policy.clients]]
name = "local"
roles = ["issuer", "hash-signer"]
{extra_config}
"""
    )
    ready = directory / "ready.json"
    ready.unlink(missing_ok=True)
    log = (directory / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "signer.cli",
            "serve",
            "--config",
            str(config_path),
            "--ready-file",
            str(ready),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=own_session,
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server did not start:\n{(directory / 'serve.log').read_text()}")
        time.sleep(0.1)
    info = json.loads(ready.read_text())
    appliance = Appliance(
        address=f"127.0.0.1:{info['port']}",
        metrics_port=info["metrics_port"],
        pids=tuple(info["pids"]),
        directory=directory,
        config_path=config_path,
    )
    return appliance, process


def wait_serving(appliance: Appliance, timeout: float = SERVER_START_TIMEOUT) -> None:
    """Until health says SERVING: the ready file comes when the port is bound, before the
    ledger's head has been matched against the HSM (ADR 0007), and nothing signs until then."""
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(appliance.address))
    deadline = time.monotonic() + timeout
    serving = health_pb2.HealthCheckResponse.SERVING
    while stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status != serving:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the appliance did not turn SERVING within {timeout:.0f} s")
        time.sleep(0.1)


def stop_appliance(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """The appliance with 2 workers, an active ES256 and an active PS256 key (dev CSCA)."""
    require_softhsm()
    running, process = start_appliance(tmp_path_factory.mktemp("appliance"))
    try:
        wait_serving(running)
        yield running
    finally:
        stop_appliance(process)


#: The session token's user PIN, in the environment for configs that name that token.
UNIT_PIN_ENV = "HCERT_UNIT_TOKEN_PIN"


@pytest.fixture(scope="session")
def unit_token_config(hsm_token: HsmToken, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``[hsm]`` and ``[ledger]`` TOML for a CLI run in this process on the session token: one
    ledger for the whole session, since the token keeps the head of each of its chains."""
    os.environ[UNIT_PIN_ENV] = "1234"
    ledger = tmp_path_factory.mktemp("session-ledger") / "ledger.sqlite"
    return (
        f'[hsm]\nmodule = "{find_softhsm_module()}"\ntoken_label = "unit"\n'
        f'pin_env = "{UNIT_PIN_ENV}"\n[ledger]\npath = "{ledger}"\n'
    )


@pytest.fixture(scope="session")
def hsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HsmToken]:
    """An in-process session on a fresh SoftHSM token (PKCS#11 is loaded once per process, so
    every in-process HSM test shares this token; tests use their own labels)."""
    module = require_softhsm()
    softhsm = SoftHsm(tmp_path_factory.mktemp("softhsm"))
    softhsm.ensure_layout()
    softhsm.activate()
    softhsm.init_token("unit", "1234", "5678")
    token = HsmToken(module, "unit", "1234")
    try:
        yield token
    finally:
        token.close()


@pytest.fixture(scope="session")
def dev_csca(tmp_path_factory: pytest.TempPathFactory) -> DevCsca:
    return DevCsca.load_or_create(tmp_path_factory.mktemp("csca"), "VN")


@pytest.fixture(scope="session")
def dev_tls(tmp_path_factory: pytest.TempPathFactory) -> DevTls:
    """Dev TLS files (``signer dev-tls``): a CA, a server certificate for 127.0.0.1 and clients
    ``issuer-a``, ``reader-b``, ``expired`` (same CA, expired yesterday) and ``foreign`` (a
    certificate from another CA; its files are under a second directory)."""
    directory = tmp_path_factory.mktemp("dev-tls")
    expired = write_dev_tls(
        directory, ["expired"], client_not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    )
    main = write_dev_tls(directory, ["issuer-a", "reader-b"])
    foreign = write_dev_tls(tmp_path_factory.mktemp("dev-tls-foreign"), ["foreign"])
    return replace(main, clients={**expired.clients, **main.clients, **foreign.clients})


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a unix socket in a temporary directory (tests/postgres.py);
    each test takes a database of its own with ``new_database``."""
    server = PostgresServer(require_postgres())
    try:
        yield server
    finally:
        server.close()
