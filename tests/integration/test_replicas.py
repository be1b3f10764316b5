"""Two replicas on one SoftHSM token and one PostgreSQL ledger (issue 11 §6).

Two ``signer serve`` processes, each with its own ports and its own ``[ledger] chain``, share a
dev directory (so one token) and one database. Both serve; two dev officers rotate the key
through the CLI (generate, CSR, the dev CA, import, activate, retire: dual control); each
replica's switch to the new key is measured from the approval and must come within
``key_refresh_seconds`` plus scheduling slack. Every output verifies with pycose. Afterwards
each replica's scrape shows its own counts (there is no replica or chain label: Prometheus
tells the two apart by the scrape target, ``instance``), and each replica's certificates are
on its own chain in the one database, as ``signer audit show --ledger URL`` prints it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance, wait_serving
from tests.independent import hc1_verifies
from tests.integration.helpers import (
    dual_control,
    keys_cli,
    kid_of_der,
    run_cli,
    sample,
    scrape,
    sign_one,
    signature_hash,
    to_json,
    wait_until,
)
from tests.postgres import PostgresServer

REFRESH_SECONDS = 1.0  # start_appliance sets [hsm] key_refresh_seconds = 1.0
SWITCH_SLACK = 2.0  # one self-test of the new key + scheduling on a busy 2-core machine
OLD, NEW = "dev-dsc-es256", "replica-rot"
ACTIVE, RETIRED = 2, 3  # KeyState in the trust list


@dataclass
class Replica:
    """One appliance and every certificate this test got from it."""

    name: str
    appliance: Appliance
    signed: list[pb.Signed] = field(default_factory=list)
    switched_after: float | None = None  # seconds from the approval to the first new-key output

    def sign(self, seed: int) -> pb.Signed:
        payload = to_json(vaccination_payloads(1, seed=seed)[0])
        result = sign_one(self.appliance.address, payload)
        assert result.HasField("signed"), f"{self.name}: {result.rejected.errors}"
        self.signed.append(result.signed)
        return result.signed


@pytest.mark.timeout(420)
def test_two_replicas_share_token_and_ledger_switch_keys_and_stay_distinguishable(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    require_softhsm()
    database = postgres.new_database()
    ledger = 'url = "{url}"\nchain = "{chain}"\n'
    first, first_process = start_appliance(
        tmp_path / "a",
        "[ledger]\n" + ledger.format(url=database, chain="replica-a"),
        workers=1,
        key_algorithms=("ES256",),
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "dev").symlink_to(tmp_path / "a" / "dev")  # the same token
    try:
        second, second_process = start_appliance(
            tmp_path / "b",
            "[ledger]\n" + ledger.format(url=database, chain="replica-b"),
            workers=1,
            key_algorithms=("ES256",),
        )
    except Exception:
        stop_appliance(first_process)
        raise
    replicas = [Replica("replica-a", first), Replica("replica-b", second)]
    try:
        for replica in replicas:
            wait_serving(replica.appliance)
        assert first.address != second.address and first.metrics_port != second.metrics_port
        # both serve, and with different counts so that their scrapes can be told apart
        for n in range(3):
            replicas[0].sign(seed=n)
        for n in range(5):
            replicas[1].sign(seed=100 + n)
        old_kid = {e.label: e.kid for e in first.trust_list()}[OLD]
        assert {s.kid for r in replicas for s in r.signed} == {old_kid}
        _rotate(tmp_path, first.config_path, replicas)
        _retire(first.config_path, tmp_path / "a" / "dev" / "officers", replicas)
        _check_metrics(replicas)  # while both run: a scrape is of a running replica
        trust = {
            e.kid: x509.load_der_x509_certificate(e.certificate_der) for e in first.trust_list()
        }
    finally:
        stop_appliance(second_process)
        stop_appliance(first_process)

    for replica in replicas:
        for signed in replica.signed:
            assert hc1_verifies(signed.hc1, trust[signed.kid]), f"{replica.name}: no verify"
    _check_ledger(database, first.config_path, replicas)


def _rotate(tmp_path: Path, config: Path, replicas: list[Replica]) -> None:
    """The officers' rotation up to the activation; then sign on both replicas until each has
    switched to the new key, and for one more refresh period: never the old key again."""
    officers = tmp_path / "a" / "dev" / "officers"
    keys_cli(config, "generate", "--label", NEW, "--alg", "ES256")
    csr, dsc = tmp_path / "new.csr", tmp_path / "new.pem"
    keys_cli(
        config, "csr", "--label", NEW, "--subject", "CN=VN DSC replicas,O=MoH,C=VN",
        "--out", str(csr),
    )  # fmt: skip
    issued = run_cli(
        "dev-ca", "issue", "--config", str(config), "--csr", str(csr), "--out", str(dsc)
    )
    assert issued.returncode == 0, issued.stderr
    csca = tmp_path / "a" / "dev" / "dev-csca.pem"
    dual_control(config, officers, "import-cert", "--label", NEW, str(dsc), "--csca", str(csca))
    new_kid = kid_of_der(
        x509.load_pem_x509_certificate(dsc.read_bytes()).public_bytes(Encoding.DER)
    )
    dual_control(config, officers, "activate", "--label", NEW)
    approved = time.monotonic()
    seed = 1000
    deadline = approved + REFRESH_SECONDS + SWITCH_SLACK
    while any(r.switched_after is None for r in replicas):
        assert time.monotonic() < deadline + 10, "a replica never switched (see below)"
        for replica in replicas:
            seed += 1
            if replica.sign(seed).kid == new_kid and replica.switched_after is None:
                replica.switched_after = time.monotonic() - approved
        time.sleep(0.05)
    switches = {r.name: round(r.switched_after or 0.0, 2) for r in replicas}
    print(f"switch to the new key after the approval, per replica (s): {switches}")
    for replica in replicas:
        assert replica.switched_after is not None
        assert replica.switched_after <= REFRESH_SECONDS + SWITCH_SLACK, switches
    steady = time.monotonic() + REFRESH_SECONDS + 0.5
    while time.monotonic() < steady:
        for replica in replicas:
            seed += 1
            assert replica.sign(seed).kid == new_kid, f"{replica.name} went back to the old key"
        time.sleep(0.05)


def _retire(config: Path, officers: Path, replicas: list[Replica]) -> None:
    """Retire the old key; both trust lists show it within a refresh."""
    dual_control(config, officers, "retire", "--label", OLD)
    wanted = {OLD: RETIRED, NEW: ACTIVE}
    for replica in replicas:
        states = replica.appliance.trust_list

        def retired(states: Callable[[], list[pb.TrustListEntry]] = states) -> bool | None:
            return True if {e.label: e.state for e in states()} == wanted else None

        wait_until(retired, REFRESH_SECONDS + SWITCH_SLACK + 10, f"{replica.name}: {wanted}")


def _check_metrics(replicas: list[Replica]) -> None:
    """Each replica's scrape counts exactly what this test got from that replica: items,
    ledger records and signatures per kid."""
    for replica in replicas:
        samples = scrape(replica.appliance.metrics_port)
        assert sample(samples, "hcert_items_total", outcome="signed") == len(replica.signed)
        assert sample(samples, "hcert_ledger_records_total") == len(replica.signed)
        by_kid: dict[bytes, int] = {}
        for signed in replica.signed:
            by_kid[signed.kid] = by_kid.get(signed.kid, 0) + 1
        for kid, count in by_kid.items():
            name = base64.b64encode(kid).decode()
            assert sample(samples, "hcert_signatures_total", kid=name) == count, (
                replica.name,
                name,
            )
    counts = [len(r.signed) for r in replicas]
    assert counts[0] != counts[1], "equal counts would not tell the scrapes apart"


def _check_ledger(database: str, config: Path, replicas: list[Replica]) -> None:
    """One query over the one database: each certificate on its own replica's chain, the
    rotation on the key-events chain, and every chain intact with its HSM checkpoints."""
    shown = run_cli("audit", "show", "--ledger", database)
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    by_chain: dict[str, set[str]] = {}
    for line in lines:
        if "event" not in line:
            by_chain.setdefault(line["chain"], set()).add(line["signature"])
    for replica in replicas:
        mine = {base64.b64encode(signature_hash(s.hc1)).decode() for s in replica.signed}
        assert by_chain.get(replica.name) == mine, replica.name
    assert set(by_chain) == {r.name for r in replicas}
    events = [line["event"] for line in lines if line.get("chain") == "key-events"]
    ops = {(e.get("op"), e.get("label")) for e in events if e.get("outcome") == "executed"}
    assert {("activate", NEW), ("retire", OLD)} <= ops, ops
    verified = subprocess.run(
        [sys.executable, "-m", "signer.cli", "audit", "verify", "--config", str(config),
         "--ledger", database],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for replica in replicas:
        assert f"chain {replica.name!r}: {len(replica.signed)} record(s), intact" in verified.stdout
