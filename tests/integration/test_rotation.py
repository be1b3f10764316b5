"""Key rotation under continuous load, by officers using the CLI, on two servers sharing a token.

Three client processes sign in a loop against two appliances (two ``signer serve`` processes on
one dev directory, so one SoftHSM token) while two dev officers, through ``python -m signer.cli
keys …`` subprocesses, generate a key, certify it with the dev CA, import, activate, and retire
the old key (issue 4 §7). Afterwards: no failed item; every output's kid names a DSC from
GetTrustList that verifies it (pycose, tests/independent.py); outputs from before and after the
switch verify; and every request sent after switch + refresh was signed with the new key, on
both servers.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import dual_control, keys_cli, sample, scrape

REFRESH_SECONDS = 1.0  # start_appliance sets [hsm] key_refresh_seconds = 1.0
SWITCH_MARGIN = 2.0  # refresh period + one self-test + scheduling slack on a busy 2-core box
OLD, NEW = "dev-dsc-es256", "rot-2025-h2"

_CLIENT = """
import json, sys, time
from pathlib import Path
import grpc
from signer.api.v1 import signer_pb2 as pb, signer_pb2_grpc as pb_grpc
from signer.bench.payloads import vaccination_payloads

addresses, out, stop = sys.argv[1].split(","), Path(sys.argv[2]), Path(sys.argv[3])
seed = int(sys.argv[4])
stubs = [pb_grpc.SignerStub(grpc.insecure_channel(a)) for a in addresses]
payloads = [json.dumps(p) for p in vaccination_payloads(4, seed=seed)]
n = 0
with out.open("w") as f:
    while not stop.exists():
        server = n % len(stubs)
        items = [pb.SignItem(id=f"{seed}-{n}-{i}", payload_json=p) for i, p in enumerate(payloads)]
        t0 = time.time()
        try:
            response = stubs[server].SignBatch(pb.SignBatchRequest(items=items), timeout=30)
            results = [
                {"kid": r.signed.kid.hex(), "hc1": r.signed.hc1}
                if r.HasField("signed")
                else {"errors": [e.code + ": " + e.message for e in r.rejected.errors]}
                for r in response.results
            ]
        except grpc.RpcError as e:
            results = [{"errors": ["rpc: " + str(e.code())]}] * len(items)
        line = {"t0": t0, "t1": time.time(), "server": server, "results": results}
        f.write(json.dumps(line) + "\\n")
        f.flush()
        n += 1
        time.sleep(0.03)  # steady load; saturation is the benchmark's job, not this test's
"""


def _states(appliance: Appliance) -> dict[str, int]:
    return {e.label: e.state for e in appliance.trust_list()}


@pytest.mark.timeout(300)
def test_rotation_under_load_switches_both_servers_without_failed_items(tmp_path: Path) -> None:
    require_softhsm()
    first, first_process = start_appliance(tmp_path / "a", workers=2)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "dev").symlink_to(tmp_path / "a" / "dev")  # same dev directory and token
    try:
        second, second_process = start_appliance(
            tmp_path / "b", '[ledger]\nchain = "second"\n', workers=1
        )
    except Exception:
        stop_appliance(first_process)
        raise
    try:
        _rotate_and_check(tmp_path, first, second)
    finally:
        stop_appliance(second_process)
        stop_appliance(first_process)


def _rotate_and_check(tmp_path: Path, first: Appliance, second: Appliance) -> None:
    config, officers = first.config_path, tmp_path / "a" / "dev" / "officers"
    stop = tmp_path / "stop"
    addresses = f"{first.address},{second.address}"
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CLIENT,
                addresses,
                str(tmp_path / f"c{i}.jsonl"),
                str(stop),
                str(i),
            ]
        )
        for i in range(3)
    ]
    try:
        time.sleep(2.0)  # outputs signed by the old key
        keys_cli(config, "generate", "--label", NEW, "--alg", "ES256")
        csr, dsc = tmp_path / "new.csr", tmp_path / "new.pem"
        keys_cli(
            config,
            "csr",
            "--label",
            NEW,
            "--subject",
            "CN=VN DSC rotation,O=MoH,C=VN",
            "--out",
            str(csr),
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "signer.cli",
                "dev-ca",
                "issue",
                "--config",
                str(config),
                "--csr",
                str(csr),
                "--out",
                str(dsc),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        dual_control(
            config,
            officers,
            "import-cert",
            "--label",
            NEW,
            str(dsc),
            "--csca",
            str(tmp_path / "a" / "dev" / "dev-csca.pem"),
        )
        activated = time.time()
        dual_control(config, officers, "activate", "--label", NEW)
        switched = time.time() + REFRESH_SECONDS + SWITCH_MARGIN
        time.sleep(switched - time.time())
        dual_control(config, officers, "retire", "--label", OLD)
        time.sleep(REFRESH_SECONDS + 2.0)  # more outputs after the switch
    finally:
        stop.touch()
        for client in clients:
            client.wait(timeout=60)

    trust: dict[str, x509.Certificate] = {}
    for appliance in (first, second):
        trust.update({kid.hex(): c for kid, c in appliance.dsc_by_kid().items()})
        assert _states(appliance)[NEW] == 2  # KEY_STATE_ACTIVE
        assert _states(appliance)[OLD] == 3  # KEY_STATE_RETIRED: still listed, still verifies
    listed = {e.label: e.kid.hex() for e in first.trust_list()}
    old_kid, new_kid = listed[OLD], listed[NEW]
    # Private-key usage end: the dev DSC has no PrivateKeyUsagePeriod → activation + 183 days.
    usage_end = sample(
        scrape(first.metrics_port),
        "hcert_key_usage_end_timestamp_seconds",
        kid=base64.b64encode(bytes.fromhex(new_kid)).decode(),
        label=NEW,
    )
    assert abs(usage_end - (activated + 183 * 86400)) < 60
    requests = [
        json.loads(line)
        for i in range(3)
        for line in (tmp_path / f"c{i}.jsonl").read_text().splitlines()
    ]
    failed = [r for q in requests for r in q["results"] if "errors" in r]
    assert not failed, f"{len(failed)} failed items, e.g. {failed[:3]}"
    kids_seen: dict[str, int] = {}
    for q in requests:
        for r in q["results"]:
            assert r["kid"] in trust, f"kid {r['kid']} is not on the trust list"
            assert hc1_verifies(r["hc1"], trust[r["kid"]]), "output does not verify"
            kids_seen[r["kid"]] = kids_seen.get(r["kid"], 0) + 1
    assert kids_seen.get(old_kid, 0) > 0 and kids_seen.get(new_kid, 0) > 0, kids_seen
    for server in (0, 1):
        after = [q for q in requests if q["server"] == server and q["t0"] > switched]
        assert after, f"no requests to server {server} after the switch"
        kids = {r["kid"] for q in after for r in q["results"]}
        assert kids == {new_kid}, f"server {server} still signed with {kids - {new_kid}}"
    audit = subprocess.run(
        [sys.executable, "-m", "signer.cli", "keys", "audit", "--verify", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
