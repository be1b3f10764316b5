"""The signed officer roster on a running appliance (issue 8 §8).

One appliance, in three acts:

1. The issue's attack: two self-made officers' public keys copied into ``[officers]
   directory``, a key generated in the token and its DSC issued by the real (dev) CSCA, with an
   ``active`` state record the two signed written straight into the token with the PIN. The
   CLI refuses their keys, the appliance never lists the key, before and after a restart, and
   every signature of a batch verifies (pycose) under the real DSC.
2. A proper rotation: carol added by the two dev officers through ``signer keys roster``;
   after a restart carol and a dev officer bring a new key into service, and it signs.
3. A roster swap: the roster files replaced by a roster mallory and eve signed themselves; the
   appliance refuses to start, naming the pin, and so does ``signer keys``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from cryptography import x509

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.keys.officers import create_officer
from signer.keys.roster import RosterDocument, create_first_roster, roster_file
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance, wait_serving
from tests.independent import hc1_verifies
from tests.integration.helpers import dual_control, items, keys_cli, signer_cli, stub

T = TypeVar("T")

REAL, ROGUE, NEW = "dev-dsc-es256", "rogue-dsc", "carol-dsc"

_FORGER = """
import sys
from pathlib import Path
from signer.config import load_config
from signer.domain import Alg
from signer.keys.devca import DevCsca, create_dev_key
from signer.keys.officers import OfficerKey, Roster, load_public_key
from signer.token import open_token
config = load_config(sys.argv[1])
keys = [Path(p) for p in sys.argv[2:]]
names = [k.name.removesuffix(".key.pem") for k in keys]
public = {n: load_public_key(k.with_name(n + ".pub.pem")) for n, k in zip(names, keys)}
roster = Roster(Path(), public)
officers = tuple(OfficerKey.load(k, roster) for k in keys)
token = open_token(config)
csca = DevCsca.load_or_create(config.dev_dir, config.issuer.country)
create_dev_key(token, csca, Alg.ES256, "rogue-dsc", "VN", officers=officers)
token.close()
"""


def _forge_active_key(appliance: Appliance, *officer_keys: Path) -> None:
    """With the PIN only: a key, a DSC of the real CSCA, an active record signed by
    ``officer_keys``."""
    env = {
        **os.environ,
        "SOFTHSM2_CONF": str(appliance.directory / "dev" / "softhsm" / "softhsm2.conf"),
    }
    subprocess.run(
        [sys.executable, "-c", _FORGER, str(appliance.config_path), *map(str, officer_keys)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


def _signs_only_with(appliance: Appliance, label: str, seed: int) -> None:
    """A batch of 50: every item signed under ``label``'s DSC (pycose), none under another."""
    trust = {e.label: e for e in appliance.trust_list()}
    dsc = x509.load_der_x509_certificate(trust[label].certificate_der)
    payloads = vaccination_payloads(50, seed=seed)
    request = pb.SignBatchRequest(items=items(payloads, f"roster-{seed}"))
    response = _retrying_unavailable(lambda: stub(appliance.address).SignBatch(request, timeout=60))
    signed = [r.signed for r in response.results if r.HasField("signed")]
    assert len(signed) == len(payloads)
    assert {s.kid for s in signed} == {trust[label].kid}
    assert all(hc1_verifies(s.hc1, dsc) for s in signed)


def _retrying_unavailable(call: Callable[[], T], seconds: float = 30.0) -> T:
    """``call``, again while it fails UNAVAILABLE (retryable), as a client must. The forger and
    the CLI write the token from other processes; SoftHSM can answer a worker reading it at that
    moment CKR_FUNCTION_FAILED. The worker tries once more on a new session; if that fails too,
    it is HSM trouble: UNAVAILABLE while the worker restarts through the login gate."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _restart(
    directory: Path, process: subprocess.Popen[bytes]
) -> tuple[Appliance, subprocess.Popen[bytes]]:
    stop_appliance(process)
    appliance, process = start_appliance(directory, workers=1, key_algorithms=("ES256",))
    wait_serving(appliance)
    return appliance, process


@pytest.mark.timeout(600)
def test_only_the_roster_that_chains_from_the_pin_approves(tmp_path: Path) -> None:
    require_softhsm()
    directory = tmp_path / "a"
    appliance, process = start_appliance(directory, workers=1, key_algorithms=("ES256",))
    officers = directory / "dev" / "officers"
    config = appliance.config_path
    try:
        wait_serving(appliance)
        # 1. Two self-made officers, their public keys copied into the roster directory.
        outside = tmp_path / "outside"
        attackers = [create_officer(outside, n) for n in ("mallory", "eve")]
        for name in ("mallory", "eve"):
            shutil.copy(outside / f"{name}.pub.pem", officers / f"{name}.pub.pem")
        refused = signer_cli("keys", "list", "--config", str(config))
        assert refused.returncode == 0  # the roster still loads: the copies are ignored
        keys_cli(config, "generate", "--label", "attack", "--alg", "ES256")
        refused = signer_cli(
            "keys", "activate", "--label", "attack", "--officer-key", str(attackers[0]),
            "--config", str(config),
        )  # fmt: skip
        assert refused.returncode == 2 and "is not in the roster" in refused.stderr
        _forge_active_key(appliance, *attackers)
        listed = signer_cli("keys", "list", "--config", str(config), "--json")
        assert listed.returncode == 0 and '"rogue-dsc"' in listed.stdout
        assert all(r["state"] != "active" for r in json.loads(listed.stdout) if r["label"] == ROGUE)
        assert ROGUE not in {e.label for e in appliance.trust_list()}
        _signs_only_with(appliance, REAL, seed=81)
        appliance, process = _restart(directory, process)
        assert ROGUE not in {e.label for e in appliance.trust_list()}
        _signs_only_with(appliance, REAL, seed=82)

        # 2. A proper rotation: carol added by the two dev officers.
        carol = create_officer(tmp_path / "carol", "carol")
        proposal = tmp_path / "roster.2.proposed.json"
        keys_cli(
            config, "roster", "propose", "--add", f"carol={carol.with_name('carol.pub.pem')}",
            "--officer-key", str(officers / "dev-officer-a.key.pem"), "--out", str(proposal),
        )  # fmt: skip
        keys_cli(config, "generate", "--label", NEW, "--alg", "ES256")
        installed = keys_cli(
            config, "roster", "sign", str(proposal),
            "--officer-key", str(officers / "dev-officer-b.key.pem"),
        )  # fmt: skip
        assert installed["installed"] == str(roster_file(officers, 2))
        shown = keys_cli(config, "roster", "show")
        assert [v["version"] for v in shown["versions"]] == [1, 2]
        shutil.copy(carol, officers / "carol.key.pem")
        csr, dsc = tmp_path / "new.csr", tmp_path / "new.pem"
        keys_cli(
            config, "csr", "--label", NEW, "--subject", "CN=VN DSC carol,C=VN", "--out", str(csr)
        )
        done = signer_cli(
            "dev-ca", "issue", "--config", str(config), "--csr", str(csr), "--out", str(dsc)
        )
        assert done.returncode == 0, done.stderr
        dual_control(config, officers, "import-cert", "--label", NEW, str(dsc), first="carol")
        dual_control(config, officers, "activate", "--label", NEW, first="carol")
        appliance, process = _restart(directory, process)  # workers read the roster at start
        _signs_only_with(appliance, NEW, seed=83)

        # 3. A swap: the roster replaced by one mallory and eve signed themselves.
        stop_appliance(process)
        for path in officers.glob("roster.*.json"):
            path.unlink()
        swapped = create_first_roster(officers, attackers, 2)
        assert isinstance(swapped, RosterDocument)
        refused = signer_cli("keys", "list", "--config", str(config))
        assert (
            refused.returncode == 2 and "not the pinned [officers] roster_sha256" in refused.stderr
        )
        with pytest.raises(RuntimeError, match="not the pinned"):
            appliance, process = start_appliance(directory, workers=1, key_algorithms=("ES256",))
    finally:
        stop_appliance(process)
