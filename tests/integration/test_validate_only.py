"""``signer validate`` offline, ``validate_only`` on the wire and signing for real, over the same
file of good and bad records: the same verdict for every item, and ``validate_only`` signs
nothing (no signature, no ledger record, no HSM signature counted)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.cli import main
from tests.conftest import Appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import scrape, to_json
from tests.unit.test_validate_cli import BAD_LINES


def _lines() -> list[str]:
    """A good half (distinct people and UVCIs) and a bad half (one line per error code)."""
    good = [to_json(p) for p in vaccination_payloads(len(BAD_LINES), seed=12)]
    return good + list(BAD_LINES.values())


def _offline(tmp_path: Path, appliance: Appliance, lines: list[str]) -> list[dict[str, Any]]:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    status = main(
        ["validate", str(source), "--config", str(appliance.config_path), "--out", str(out)]
    )
    assert status == 1  # the bad half
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _errors(result: pb.ItemResult) -> list[tuple[str, str]]:
    return [(e.code, e.path) for e in result.rejected.errors]


def _offline_errors(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["code"], e["path"]) for e in record.get("errors", [])]


def _batch(lines: list[str], *, validate_only: bool) -> pb.SignBatchRequest:
    return pb.SignBatchRequest(
        items=[pb.SignItem(id=str(n), payload_json=line) for n, line in enumerate(lines, 1)],
        validate_only=validate_only,
    )


def _ledger_size(appliance: Appliance) -> int:
    db = sqlite3.connect(f"file:{appliance.directory / 'dev' / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        count: int = db.execute("SELECT count(*) FROM issuance").fetchone()[0]
        return count
    finally:
        db.close()


def _signatures(appliance: Appliance) -> float:
    samples = scrape(appliance.metrics_port)
    return sum(v for (name, _), v in samples.items() if name == "hcert_signatures_total")


def test_offline_validate_only_and_signing_agree(appliance: Appliance, tmp_path: Path) -> None:
    lines = _lines()
    offline = _offline(tmp_path, appliance, lines)
    stub = appliance.stub()
    ledger_before, signatures_before = _ledger_size(appliance), _signatures(appliance)

    checked = stub.SignBatch(_batch(lines, validate_only=True)).results
    assert _ledger_size(appliance) == ledger_before, "validate_only wrote to the ledger"
    assert _signatures(appliance) == signatures_before, "validate_only signed in the HSM"
    signed = stub.SignBatch(_batch(lines, validate_only=False)).results

    assert len(offline) == len(checked) == len(signed) == len(lines)
    dsc_by_kid = appliance.dsc_by_kid()
    valid = 0
    for record, check, sign in zip(offline, checked, signed, strict=True):
        assert record["id"] == check.id == sign.id
        assert check.WhichOneof("outcome") in ("valid", "rejected")
        if record.get("valid"):
            valid += 1
            assert check.HasField("valid"), (record, check)
            assert [w.code for w in check.valid.warnings] == [w["code"] for w in record["warnings"]]
            assert sign.HasField("signed"), (record, sign)
            assert hc1_verifies(sign.signed.hc1, dsc_by_kid[sign.signed.kid])
        else:
            assert _errors(check) == _offline_errors(record), record
            assert _errors(sign) == _offline_errors(record), record
    assert valid >= len(lines) // 2  # the good half at least, so both outcomes are compared
    assert _ledger_size(appliance) == ledger_before + valid


def test_validate_only_reports_the_certificate_type(appliance: Appliance) -> None:
    [good] = vaccination_payloads(1, seed=13)
    response = appliance.stub().SignBatch(_batch([to_json(good)], validate_only=True))
    [result] = response.results
    assert result.valid.certificate_type == pb.CERTIFICATE_TYPE_VACCINATION
    assert not result.HasField("signed")


def test_validate_only_on_a_stream_and_across_chunks(appliance: Appliance) -> None:
    """A batch big enough for several chunks: a UVCI repeated in another chunk is refused as
    when signing, and every other item is valid."""
    payloads = vaccination_payloads(600, seed=14)
    repeated = dict(payloads[0])
    lines = [to_json(p) for p in payloads] + [to_json(repeated)]
    [response] = appliance.stub().SignStream(iter([_batch(lines, validate_only=True)]))
    outcomes = [r.WhichOneof("outcome") for r in response.results]
    assert outcomes == ["valid"] * 600 + ["rejected"]
    assert [e.code for e in response.results[-1].rejected.errors] == ["duplicate_uvci"]


@pytest.mark.parametrize("validate_only", [True, False])
def test_an_oversized_batch_is_refused_either_way(
    appliance: Appliance, validate_only: bool
) -> None:
    lines = [to_json(p) for p in vaccination_payloads(1, seed=15)] * 1001
    with pytest.raises(grpc.RpcError) as caught:
        appliance.stub().SignBatch(_batch(lines, validate_only=validate_only))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_signature_metric_counts_a_real_signature(appliance: Appliance) -> None:
    """The metric the first test relies on moves when something is signed, so a renamed metric
    cannot make its nothing-signed check pass vacuously."""
    [good] = vaccination_payloads(1, seed=16)
    before = _signatures(appliance)
    appliance.stub().SignBatch(_batch([to_json(good)], validate_only=False))
    assert _signatures(appliance) == before + 1
