"""Issue 9 §1–§5: the appliance keeps its promises through HSM faults and heals by itself.

Real parts only: a real ``signer serve`` on a real SoftHSM token; a network HSM is SoftHSM
exported by ``p11-kit server`` on a unix socket, killed and started again; a lost session is a
real C_CloseSession behind the worker's back (``hsm._faults``, test-only, SoftHSM only); a second
process changes the token. Every signature checked is verified with pycose.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hsm import SoftHsm, find_softhsm_module
from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from tests.conftest import (
    Appliance,
    require_softhsm,
    start_appliance,
    stop_appliance,
    wait_serving,
)
from tests.independent import hc1_verifies
from tests.integration.helpers import (
    P11KIT_CLIENT,
    P11KitServer,
    alive,
    channel,
    require_p11kit,
    sample,
    scrape,
    stub,
    to_json,
    wait_until,
)

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(autouse=True)
def _softhsm() -> None:
    require_softhsm()


def _health(appliance: Appliance) -> int:
    stub_ = health_pb2_grpc.HealthStub(channel(appliance.address))
    return int(stub_.Check(health_pb2.HealthCheckRequest(), timeout=10).status)


def _batch(count: int, prefix: str, seed: int) -> pb.SignBatchRequest:
    return pb.SignBatchRequest(
        items=[
            pb.SignItem(id=f"{prefix}{i}", payload_json=to_json(p))
            for i, p in enumerate(vaccination_payloads(count, seed=seed))
        ]
    )


def _verified(response: pb.SignBatchResponse, dscs: dict[bytes, x509.Certificate]) -> int:
    """Every result signed by a DSC of the trust list and verified with pycose; the count."""
    for result in response.results:
        assert result.HasField("signed"), (result.id, result.rejected)
        assert hc1_verifies(result.signed.hc1, dscs[result.signed.kid]), result.id
    return len(response.results)


def _boot(directory: Path) -> Path:
    """A dev token with an active ES256 and PS256 key, made by the dev bootstrap and left
    behind; the dev directory."""
    _, process = start_appliance(directory)
    stop_appliance(process)
    return directory / "dev"


def _production(dev: Path) -> str:
    """The dev token's CSCA, officers, ledger and audit trail in a production config."""
    return f"""
[issuer]
csca = ["{dev / "dev-csca.pem"}"]
[officers]
directory = "{dev / "officers"}"
roster_sha256 = "{(dev / "roster.sha256").read_text().strip()}"
[ledger]
path = "{dev / "ledger.sqlite"}"
[audit]
path = "{dev / "audit.jsonl"}"
"""


def _log(appliance: Appliance) -> str:
    return (appliance.directory / "serve.log").read_text(errors="replace")


def test_network_hsm_absent_at_start_then_gone_mid_run_and_back(tmp_path: Path) -> None:
    """§1 and §4 with p11-kit server as the network HSM."""
    require_p11kit()
    dev = _boot(tmp_path / "boot")
    module = find_softhsm_module()
    assert module is not None
    hsm = P11KitServer(
        tmp_path / "p11.sock", dev / "softhsm" / "softhsm2.conf", module, "hcert-dev"
    )
    appliance, process = start_appliance(
        tmp_path / "run",
        hsm_config=f'module = "{P11KIT_CLIENT}"\npin_file = "{dev / "user.pin"}"',
        extra_config=_production(dev),
        env={"P11_KIT_SERVER_ADDRESS": hsm.address},
        dev_bootstrap=False,
    )
    try:
        # §1: the server is not there: the port listens, NOT_SERVING, calls UNAVAILABLE at once.
        assert _health(appliance) == NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            stub(appliance.address).SignBatch(_batch(3, "a", 1), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert sample(scrape(appliance.metrics_port), "hcert_hsm_up") == 0

        hsm.start()
        wait_serving(appliance, timeout=90)
        dscs = appliance.dsc_by_kid()
        assert len(dscs) == 2
        assert _verified(stub(appliance.address).SignBatch(_batch(20, "b", 2), timeout=60), dscs)

        # §4: the HSM goes away under load and comes back.
        outcomes: Counter[str] = Counter()
        stop = threading.Event()

        def load() -> None:
            seed = 100
            while not stop.is_set():
                seed += 1
                try:
                    response = stub(appliance.address).SignBatch(_batch(40, "c", seed), timeout=60)
                except grpc.RpcError as e:
                    outcomes[e.code().name] += 1
                    continue
                for result in response.results:
                    if result.HasField("rejected"):
                        outcomes["rejected:" + result.rejected.errors[0].code] += 1
                outcomes["ok"] += 1
                _verified(response, dscs)

        sender = threading.Thread(target=load)
        sender.start()
        try:
            wait_until(lambda: True if outcomes["ok"] >= 3 else None, 60, "batches to sign")
            hsm.kill()
            wait_until(
                lambda: True if _health(appliance) == NOT_SERVING else None, 60, "NOT_SERVING"
            )
            wait_until(
                lambda: True if outcomes["UNAVAILABLE"] >= 3 else None, 60, "UNAVAILABLE calls"
            )
            assert sample(scrape(appliance.metrics_port), "hcert_hsm_up") == 0
            hsm.start()
            wait_serving(appliance, timeout=90)
            signed_before = outcomes["ok"]
            wait_until(
                lambda: True if outcomes["ok"] >= signed_before + 3 else None, 60, "signing again"
            )
        finally:
            stop.set()
            sender.join(timeout=120)
        # Signed or UNAVAILABLE, never an item error for the HSM's fault.
        assert set(outcomes) <= {"ok", "UNAVAILABLE"}, outcomes
        samples = scrape(appliance.metrics_port)
        assert sample(samples, "hcert_hsm_up") == 1
        assert sample(samples, "hcert_hsm_reconnects_total") >= 1
        assert sample(samples, "hcert_hsm_errors_total", code="CKR_DEVICE_ERROR") >= 1
        assert process.poll() is None, "the front exited"
        log = _log(appliance)
        assert "HSM login attempt 1 (worker 0) failed: no token labelled" in log  # at start
        assert log.count("HSM outage:") == 1, log  # mid-run: one line per outage …
        assert log.count("HSM back after") == 1, log  # … and one at its end
        assert "Traceback" not in log
    finally:
        hsm.kill()
        stop_appliance(process)


_ATTEMPT = re.compile(r"HSM login attempt (\d+) ")


def _attempts(log: str) -> list[tuple[float, int]]:
    """(time in seconds, number) of each login attempt the front logged (JSON lines)."""
    found = []
    for line in log.splitlines():
        entry = json.loads(line)
        match = _ATTEMPT.search(entry["message"])
        if match and entry["level"] == "ERROR" and entry["role"] == "front":
            when = dt.datetime.fromisoformat(entry["time"]).timestamp()
            found.append((when, int(match.group(1))))
    return found


def test_wrong_pin_one_login_attempt_per_window_for_the_appliance(tmp_path: Path) -> None:
    """§2: three workers, one login attempt per window, readiness false, one line per attempt,
    then the right PIN file and SERVING without a restart."""
    dev = _boot(tmp_path / "boot")
    module = find_softhsm_module()
    pin_file = tmp_path / "pin"
    pin_file.write_text("not-the-pin\n")
    appliance, process = start_appliance(
        tmp_path / "run",
        workers=3,
        hsm_config=f'module = "{module}"\npin_file = "{pin_file}"',
        extra_config=_production(dev),
        env={"SOFTHSM2_CONF": str(dev / "softhsm" / "softhsm2.conf")},
        dev_bootstrap=False,
    )
    try:
        wait_until(
            lambda: True if len(_attempts(_log(appliance))) >= 4 else None,
            60,
            "four login attempts",
        )
        assert _health(appliance) == NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            stub(appliance.address).SignBatch(_batch(2, "a", 1), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        attempts = _attempts(_log(appliance))
        assert [n for _, n in attempts] == list(range(1, len(attempts) + 1))
        times = [t for t, _ in attempts]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # Windows of 0.5, 1, 2 s …: never two attempts in one window, whatever the workers.
        for window, gap in zip([0.5, 1.0, 2.0, 4.0, 8.0], gaps, strict=False):
            assert gap >= window - 0.05, gaps
        log = _log(appliance)
        assert "refused the user PIN" in log
        assert "not-the-pin" not in log
        failed = sample(
            scrape(appliance.metrics_port), "hcert_hsm_login_attempts_total", outcome="failed"
        )
        assert failed >= len(attempts)

        pin_file.write_text((dev / "user.pin").read_text())
        wait_serving(appliance, timeout=60)
        dscs = appliance.dsc_by_kid()
        assert _verified(stub(appliance.address).SignBatch(_batch(30, "b", 2), timeout=60), dscs)
        assert process.poll() is None
    finally:
        stop_appliance(process)


def test_session_lost_mid_batch_is_reopened_and_the_chunk_retried(tmp_path: Path) -> None:
    """§3: SoftHSM closes a worker's session after 25 signatures of a chunk; the batch still
    signs every item exactly once, on the same worker processes."""
    faults = tmp_path / "faults"
    faults.mkdir()
    appliance, process = start_appliance(
        tmp_path / "run", env={"HCERT_TEST_HSM_FAULTS": str(faults)}
    )
    try:
        wait_serving(appliance)
        dscs = appliance.dsc_by_kid()
        (faults / "close-session").write_text("25")
        request = _batch(120, "s", 3)
        response = stub(appliance.address).SignBatch(request, timeout=60)
        assert [r.id for r in response.results] == [i.id for i in request.items]
        assert _verified(response, dscs) == 120
        assert not (faults / "close-session").exists()
        assert len(list(faults.glob("close-session.claimed-*"))) == 1
        samples = scrape(appliance.metrics_port)
        assert sample(samples, "hcert_hsm_errors_total", code="CKR_SESSION_HANDLE_INVALID") >= 1
        assert sample(samples, "hcert_worker_restarts_total") == 0
        assert all(alive(pid) for pid in appliance.pids)
        log = _log(appliance)
        assert log.count("TEST FAULT: closing") == 1
        assert log.count("HSM call failed (CKR_SESSION_HANDLE_INVALID): opening a new session") == 1
        assert "Traceback" not in log
    finally:
        stop_appliance(process)


_TOKEN_SCRIPT = """
import json, sys
from hsm import HsmToken, find_softhsm_module
from signer.keys.state import STATE_APPLICATION
token = HsmToken(find_softhsm_module(), "hcert-dev", open(sys.argv[2]).read().strip())
if sys.argv[1] == "malformed-record":
    token.put_data(STATE_APPLICATION, "rogue-record", json.dumps({"content": 5}).encode())
elif sys.argv[1] == "delete-key":
    for key in token.signing_keys():
        if key.algorithm.value == "RSA_2048":
            key.handle.destroy()
token.close()
"""


def _change_token(dev: Path, what: str) -> None:
    """A second process writes the token with the user PIN, as any PIN holder could."""
    env = {"SOFTHSM2_CONF": str(dev / "softhsm" / "softhsm2.conf")}
    done = subprocess.run(
        [sys.executable, "-c", _TOKEN_SCRIPT, what, str(dev / "user.pin")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_token_written_by_another_process(tmp_path: Path) -> None:
    """§5: a malformed key-state record and a deleted key: no worker crashes, the deleted key
    stops signing and is reported, and nothing is signed by a key the officers did not
    activate."""
    appliance, process = start_appliance(tmp_path / "run")
    try:
        wait_serving(appliance)
        dscs = appliance.dsc_by_kid()
        dev = appliance.directory / "dev"
        pids = appliance.pids

        _change_token(dev, "malformed-record")
        _change_token(dev, "delete-key")
        wait_until(
            lambda: (
                True if sample(scrape(appliance.metrics_port), "hcert_keys_missing") == 1 else None
            ),
            30,
            "the deleted key to be reported",
        )
        es256 = stub(appliance.address).SignBatch(_batch(10, "e", 4), timeout=60)
        assert _verified(es256, dscs) == 10
        assert {r.signed.alg for r in es256.results} == {pb.ALGORITHM_ES256}
        ps = _batch(4, "p", 5)
        ps.alg = pb.ALGORITHM_PS256
        ps256 = stub(appliance.address).SignBatch(ps, timeout=60)
        for result in ps256.results:
            assert result.HasField("rejected"), result.id
            assert [e.code for e in result.rejected.errors] == ["no_key"]
        assert all(alive(pid) for pid in pids)
        samples = scrape(appliance.metrics_port)
        assert sample(samples, "hcert_worker_restarts_total") == 0
        log = _log(appliance)
        missing = log.count("private key or DSC is not in the token")
        assert 1 <= missing <= len(pids), log  # once per worker, not per refresh or request
        assert "Traceback" not in log
        assert process.poll() is None
    finally:
        stop_appliance(process)


def test_token_reinitialised_under_the_appliance(tmp_path: Path) -> None:
    """§5: the token is wiped and initialised afresh under the running appliance (same label and
    user PIN, as whoever administers the HSM could): no process crashes, nothing is signed with
    anything (no key the officers activated exists any more): health turns NOT_SERVING and
    items get ``no_key``, never a signature by a key nobody approved."""
    appliance, process = start_appliance(tmp_path / "run")
    try:
        wait_serving(appliance)
        dscs = appliance.dsc_by_kid()
        dev = appliance.directory / "dev"
        softhsm = SoftHsm(dev / "softhsm")
        shutil.rmtree(dev / "softhsm" / "tokens")
        softhsm.ensure_layout()
        softhsm.init_token("hcert-dev", (dev / "user.pin").read_text().strip(), "87654321")
        assert softhsm.has_token("hcert-dev")  # an empty token under the same label and PIN
        wait_until(lambda: True if _health(appliance) == NOT_SERVING else None, 60, "NOT_SERVING")

        def nothing_signs() -> bool | None:
            """Every item ``no_key`` once the workers have re-read the token: no key the
            officers activated is left (as with no active key at all: NOT_SERVING and
            ``no_key``, test_server_lifecycle). Meanwhile a call may be UNAVAILABLE (a worker
            lost its session), or answered from the key handles a worker still had, and then
            only with a key the officers approved (it verifies under a DSC served before)."""
            try:
                answer = stub(appliance.address).SignBatch(_batch(5, "r", 6), timeout=30)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE, e
                return None
            signed = [r for r in answer.results if r.HasField("signed")]
            assert all(hc1_verifies(r.signed.hc1, dscs[r.signed.kid]) for r in signed)
            codes = {e.code for r in answer.results for e in r.rejected.errors}
            return True if not signed and codes == {"no_key"} else None

        wait_until(nothing_signs, 30, "every item no_key")
        assert process.poll() is None
        assert "Traceback" not in _log(appliance)
    finally:
        stop_appliance(process)
