"""Rollback-proof key state (issue 8 §7) through a real appliance and the officers' CLI: a saved
"active" record of a key the officers then retired, written back into the token with the PIN,
is refused after a full restart, because the ledger keeps the highest version accepted for the
key; the refusal is logged, counted and written to the ledger's key-events chain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import dual_control, items, keys_cli, scrape, wait_until

RETIRED, KEPT = "dev-dsc-es256", "dev-dsc-ps256"

#: Reads or writes a key-state data object with the token PIN, outside the appliance, as
#: someone holding the PIN could (a fresh process: this one may have SoftHSM loaded already).
_RECORD = """
import sys
from signer.config import load_config
from signer.keys.state import STATE_APPLICATION
from signer.token import open_existing_token
token = open_existing_token(load_config(sys.argv[1]))
label = sys.argv[2]
if sys.argv[3] == "read":
    [data] = [d for d in token.data_objects(STATE_APPLICATION) if d.label == label]
    sys.stdout.write(data.value.hex())
else:
    token.put_data(STATE_APPLICATION, label, bytes.fromhex(sys.argv[4]))
"""


def _record(config: Path, label: str, *write: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _RECORD, str(config), label, "write" if write else "read", *write],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _signing_kids(appliance: Appliance, seed: int) -> set[bytes]:
    """Sign a batch; every signature checked with pycose; the kids that signed."""
    dscs = appliance.dsc_by_kid()
    batch = pb.SignBatchRequest(items=items(vaccination_payloads(40, seed=seed), "replay"))
    results = appliance.stub().SignBatch(batch, timeout=60).results
    assert all(r.HasField("signed") for r in results)
    assert all(hc1_verifies(r.signed.hc1, dscs[r.signed.kid]) for r in results)
    return {r.signed.kid for r in results}


def _kid_of(appliance: Appliance, label: str) -> bytes:
    return next(e.kid for e in appliance.trust_list() if e.label == label)


def test_a_replayed_active_record_of_a_retired_key_is_refused_after_a_restart(
    tmp_path: Path,
) -> None:
    require_softhsm()
    directory = tmp_path / "appliance"
    appliance, process = start_appliance(directory, workers=2)
    config, officers = appliance.config_path, directory / "dev" / "officers"
    try:
        retired_kid, kept_kid = _kid_of(appliance, RETIRED), _kid_of(appliance, KEPT)
        saved_active = _record(config, RETIRED)
        assert json.loads(bytes.fromhex(saved_active))["content"]["retire_at"] is None

        dual_control(config, officers, "retire", "--label", RETIRED)
        wait_until(
            lambda: True if _signing_kids(appliance, 1) == {kept_kid} else None,
            timeout=30,
            what="the retired key to stop signing",
        )
    finally:
        stop_appliance(process)

    _record(config, RETIRED, saved_active)  # the replay, with the PIN, while it is down
    appliance, process = start_appliance(directory, workers=2)
    try:
        for seed in (2, 3):
            assert _signing_kids(appliance, seed) == {kept_kid}
        assert retired_kid not in {
            e.kid for e in appliance.trust_list() if e.state == pb.KEY_STATE_ACTIVE
        }

        def refusal() -> dict[str, Any] | None:
            events = keys_cli(config, "audit")  # the last line: the newest event
            return events if events.get("op") == "refuse-replay" else None

        event = wait_until(refusal, timeout=30, what="the refusal in the ledger's key events")
        assert event["label"] == RETIRED and event["outcome"] == "refused"
        assert event["params"]["version"] < event["params"]["floor"]
        replays = sum(
            value
            for (name, _), value in scrape(appliance.metrics_port).items()
            if name == "hcert_key_state_replays_total"
        )
        assert replays >= 1
        log = (directory / "serve.log").read_text()
        assert "refusing a replayed key-state record" in log
    finally:
        stop_appliance(process)
