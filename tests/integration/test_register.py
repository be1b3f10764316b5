"""Registering certificates issued before the ledger (issue 8 §6), on the session appliance.

Certificates signed with the PIN directly in the HSM stand in for those issued before the
ledger existed: Reissue refuses them (``hc1_not_issued_here``) until two officers have run
``signer audit register`` on the file; then Reissue signs them (pycose checks the new
signatures), the records say who registered them, and a second registration adds nothing.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from tests.conftest import Appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import (
    CoseParts,
    signature_hash,
    signed_in_hsm,
    signer_cli,
)


def _register(appliance: Appliance, path: Path, officer: str) -> tuple[int, str, str]:
    key = appliance.directory / "dev" / "officers" / f"{officer}.key.pem"
    done = signer_cli(
        "audit", "register", str(path), "--officer-key", str(key),
        "--config", str(appliance.config_path),
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def _reissue(appliance: Appliance, hc1s: list[str]) -> list[pb.ItemResult]:
    request = pb.ReissueRequest(
        items=[pb.ReissueItem(id=str(i), hc1=h) for i, h in enumerate(hc1s)]
    )
    return list(appliance.stub().Reissue(request, timeout=60).results)


def test_register_with_two_officers_then_reissue(appliance: Appliance, tmp_path: Path) -> None:
    payloads = vaccination_payloads(2, seed=91)
    originals = [signed_in_hsm(appliance, p, -120, -60) for p in payloads]
    path = tmp_path / "before-the-ledger.txt"
    path.write_text("\n".join([originals[0], "", originals[1], originals[0]]) + "\n")
    refused = _reissue(appliance, originals)
    assert [[e.code for e in r.rejected.errors] for r in refused] == [["hc1_not_issued_here"]] * 2

    code, _, err = _register(appliance, path, "dev-officer-a")
    assert code == 0 and "3 certificates" in err and "a second officer runs" in err
    assert all(r.HasField("rejected") for r in _reissue(appliance, originals))  # not yet
    code, _, err = _register(appliance, path, "dev-officer-a")
    assert code == 2 and "signed registration" in err and "already" in err

    code, out, err = _register(appliance, path, "dev-officer-b")
    assert code == 0, err
    assert json.loads(out) == {"registered": 2, "skipped": 1, "chain": "registered"}

    dscs = appliance.dsc_by_kid()
    for original, result in zip(originals, _reissue(appliance, originals), strict=True):
        assert result.HasField("signed"), result
        assert hc1_verifies(result.signed.hc1, dscs[result.signed.kid])
        assert result.signed.hc1 != original

    shown = signer_cli(
        "audit", "show", "--config", str(appliance.config_path), "--chain", "registered",
        "--signature-hash", base64.b64encode(signature_hash(originals[1])).decode(),
    )  # fmt: skip
    (record,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert record["client"] == "officer:dev-officer-a,dev-officer-b"
    assert record["rpc"] == "Register" and record["cert_type"] == "vaccination"

    # Once: the same file, approved again, adds nothing.
    assert _register(appliance, path, "dev-officer-b")[0] == 0
    code, out, _ = _register(appliance, path, "dev-officer-a")
    assert code == 0 and json.loads(out) == {"registered": 0, "skipped": 3, "chain": "registered"}
    verified = signer_cli("audit", "verify", "--config", str(appliance.config_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_register_refuses_what_our_keys_did_not_sign(appliance: Appliance, tmp_path: Path) -> None:
    good = signed_in_hsm(appliance, vaccination_payloads(1, seed=92)[0], -120, -60)
    forged = CoseParts.of(good).with_signature_bit_flipped(5).hc1()
    path = tmp_path / "mixed.txt"
    path.write_text(f"{good}\n{forged}\nnot an hc1\n")
    code, _, err = _register(appliance, path, "dev-officer-a")
    assert code == 2 and "nothing proposed" in err
    assert f"{path}:2: hc1_bad_signature" in err and f"{path}:3: " in err
    code, _, err = _register(appliance, path, "dev-officer-b")
    assert code == 2  # no proposal was stored, and none is made now
    (result,) = _reissue(appliance, [good])
    assert [e.code for e in result.rejected.errors] == ["hc1_not_issued_here"]
