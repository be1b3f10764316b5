"""A full token: key generation fails cleanly and signing goes on (issue 4 §7).

SoftHSM has no object limit of its own, so the token's storage is made full for real: its token
directory is a tiny tmpfs, filled up once the appliance is running. Mounting needs root (as CI
has); under CI=true a refused mount fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import fill, tiny_tmpfs


@pytest.fixture
def tiny_token_dir(tmp_path: Path) -> Iterator[Path]:
    require_softhsm()
    with tiny_tmpfs(tmp_path / "dev" / "softhsm" / "tokens", "1m", "the full-token test") as d:
        yield d


def _keys(appliance: Appliance, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signer.cli", "keys", *args, "--config", str(appliance.config_path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_generation_fails_cleanly_and_signing_continues(
    tmp_path: Path, tiny_token_dir: Path
) -> None:
    appliance, process = start_appliance(tmp_path, workers=1, key_algorithms=("ES256",))
    try:
        before = _keys(appliance, "list", "--json")
        assert before.returncode == 0, before.stderr
        fill(tiny_token_dir)

        refused = _keys(
            appliance, "generate", "--label", "no-room", "--alg", "ES256", "--types", "vaccination"
        )
        assert refused.returncode == 2, refused
        # one error line; before it, the note that the refusal's key event is recorded in the
        # ledger but could not be checkpointed in the full token yet
        [error] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert "may be full" in error
        assert all(
            line.startswith(("error:", "key event recorded"))
            for line in refused.stderr.splitlines()
        ), refused.stderr
        assert "Traceback" not in refused.stderr
        after = _keys(appliance, "list", "--json")
        assert after.returncode == 0, after.stderr
        assert json.loads(after.stdout) == json.loads(before.stdout)  # nothing half-made

        payloads = vaccination_payloads(20, seed=77)
        items = [pb.SignItem(id=str(i), payload_json=json.dumps(p)) for i, p in enumerate(payloads)]
        response = appliance.stub().SignBatch(pb.SignBatchRequest(items=items), timeout=60)
        dscs = appliance.dsc_by_kid()
        assert all(r.HasField("signed") for r in response.results)
        assert all(hc1_verifies(r.signed.hc1, dscs[r.signed.kid]) for r in response.results)
    finally:
        stop_appliance(process)
