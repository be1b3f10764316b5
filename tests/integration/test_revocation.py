"""Issue 8 §5–6 through a real appliance: sign, revoke with a dev officer's key, Reissue refuses
the revoked certificate (``hc1_revoked``) and signs the other, and the exported revocation
batches hold the hashes computed here from the COSE bytes."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import json
import secrets
import string
from pathlib import Path
from typing import Any

import pytest

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.cli import main
from tests.conftest import Appliance
from tests.independent import hc1_claims, hc1_verifies
from tests.integration.helpers import CoseParts, sample, scrape, signature_hash


def _payload(seed: int) -> dict[str, Any]:
    """A vaccination with a UVCI no other test uses (a UVCI revocation reaches every record)."""
    payload = copy.deepcopy(vaccination_payloads(1, seed=seed)[0])
    alphabet = string.ascii_uppercase + string.digits
    payload["v"][0]["ci"] = "URN:UVCI:01:VN:" + "".join(secrets.choice(alphabet) for _ in range(16))
    return payload


def _sha16(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _reissue(appliance: Appliance, *hc1s: str) -> list[pb.ItemResult]:
    request = pb.ReissueRequest(
        items=[pb.ReissueItem(id=str(i), hc1=h) for i, h in enumerate(hc1s)]
    )
    return list(appliance.stub().Reissue(request, timeout=60).results)


def _revoke(appliance: Appliance, *which: str, capsys: pytest.CaptureFixture[str]) -> None:
    officer = sorted((appliance.directory / "dev" / "officers").glob("*.key.pem"))[0]
    code = main(
        ["audit", "revoke", *which, "--reason", "test: issued to the wrong person",
         "--officer-key", str(officer), "--config", str(appliance.config_path)]
    )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err


def test_revoked_certificates_are_not_reissued_and_are_exported(
    appliance: Appliance, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first, second = _payload(51), _payload(52)
    items = [
        pb.SignItem(id=str(i), payload_json=json.dumps(p)) for i, p in enumerate((first, second))
    ]
    signed = appliance.stub().SignBatch(pb.SignBatchRequest(items=items), timeout=60).results
    a, b = (r.signed for r in signed)
    assert a.hc1 and b.hc1, signed
    dscs = appliance.dsc_by_kid()

    # Revoke the first by its UVCI: Reissue refuses it and signs the second.
    _revoke(appliance, "--uci", first["v"][0]["ci"], capsys=capsys)
    before = scrape(appliance.metrics_port)
    refused, renewed = _reissue(appliance, a.hc1, b.hc1)
    assert [(e.code, e.path) for e in refused.rejected.errors] == [("hc1_revoked", "")], refused
    assert renewed.HasField("signed"), renewed
    assert hc1_verifies(renewed.signed.hc1, dscs[renewed.signed.kid])
    assert hc1_claims(renewed.signed.hc1)[-260][1] == second

    # Revoke the second original by its SIGNATURE hash: its re-issue is not revoked.
    _revoke(appliance, "--signature-hash", _b64(signature_hash(b.hc1)), capsys=capsys)
    (refused,) = _reissue(appliance, b.hc1)
    (renewed_again,) = _reissue(appliance, renewed.signed.hc1)  # one UVCI per batch
    assert [e.code for e in refused.rejected.errors] == ["hc1_revoked"], refused
    assert renewed_again.HasField("signed"), renewed_again
    assert hc1_verifies(renewed_again.signed.hc1, dscs[renewed_again.signed.kid])
    # both refusals counted: signed by a worker, withheld by the front, by their code
    after = scrape(appliance.metrics_port)
    for name, labels in (
        ("hcert_items_total", {"outcome": "withheld"}),
        ("hcert_item_errors_total", {"code": "hc1_revoked"}),
    ):
        assert sample(after, name, **labels) - sample(before, name, **labels) == 2, name

    # The export: the first certificate under all three hashes, the second under its
    # SIGNATURE alone (its UVCI would revoke its re-issues), every hash computed here.
    out = tmp_path / "batches.jsonl"
    code = main(
        ["audit", "revocations", "--revoked-only", "--config", str(appliance.config_path),
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    batches = [json.loads(line) for line in out.read_text().splitlines()]
    exported = {
        (batch["kid"], batch["hashType"], entry["hash"]): batch["expires"]
        for batch in batches
        for entry in batch["entries"]
    }
    uvci_a, uvci_b = first["v"][0]["ci"], second["v"][0]["ci"]
    iss = hc1_claims(a.hc1)[1]
    kid_a, kid_b = (_b64(CoseParts.of(s.hc1).header()[4]) for s in (a, b))
    exp_a, exp_b = (hc1_claims(s.hc1)[4] for s in (a, b))
    expected = {
        (kid_a, "SIGNATURE", _b64(signature_hash(a.hc1))): exp_a,
        (kid_a, "UCI", _b64(_sha16(uvci_a))): exp_a,
        (kid_a, "COUNTRYCODEUCI", _b64(_sha16(iss + uvci_a))): exp_a,
        (kid_b, "SIGNATURE", _b64(signature_hash(b.hc1))): exp_b,
    }
    mine = {
        _b64(h)
        for h in (
            signature_hash(a.hc1),
            signature_hash(b.hc1),
            signature_hash(renewed.signed.hc1),
            signature_hash(renewed_again.signed.hc1),
            _sha16(uvci_a),
            _sha16(uvci_b),
            _sha16(iss + uvci_a),
            _sha16(iss + uvci_b),
        )
    }
    assert {key for key in exported if key[2] in mine} == set(expected)
    for key, exp in expected.items():  # a batch lives as long as its latest certificate
        assert exported[key] >= _iso(exp)
    assert all(b["country"] == iss and 1 <= len(b["entries"]) <= 1000 for b in batches)


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
