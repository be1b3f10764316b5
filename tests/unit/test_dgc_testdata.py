"""Acceptance: EU DCC test data from other countries through ``signer verify`` (issue 10 §4).

Each vector of ``tests/vectors/dgc-testdata/`` (a subset of eu-digital-green-certificates/
dgc-testdata; source, commit and licence in the README there) is verified by the real CLI:
its DSC (``TESTCTX.CERTIFICATE``) is written as PEM into a trust directory, its ``PREFIX`` into
an input file, and ``signer verify --trust-dir … --at VALIDATIONCLOCK`` runs over them. The one
result line must agree with every ``EXPECTEDRESULTS`` flag, and a valid verdict must also
verify in pycose (``tests/independent.py``).

Each flag names one step of the pipeline, and each of our reasons belongs to one step, in the
order the verifier runs them (HCERT.md §10). A flag set to false demands a failure at its step
or before; a flag set to true forbids a failure at its step; and a failure must be expected by
some false flag at its step or a later one. Vectors whose own data contradict their flags are
in :data:`OVERRIDES` with the reason, and there the verdict must be exactly the one given.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer.cli import main
from signer.hcert.verify import VERIFY_REASONS
from tests.independent import hc1_verifies

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "dgc-testdata"

#: Steps in verification order; EXPECTEDDECODE and EXPECTEDVALIDJSON both need the DCC read.
STEP_OF_FLAG = {
    "EXPECTEDUNPREFIX": 1,
    "EXPECTEDB45DECODE": 2,
    "EXPECTEDCOMPRESSION": 3,
    "EXPECTEDVERIFY": 4,
    "EXPECTEDDECODE": 5,
    "EXPECTEDVALIDJSON": 5,
    "EXPECTEDKEYUSAGE": 6,
    "EXPECTEDEXPIRATIONCHECK": 7,
    "EXPECTEDSCHEMAVALIDATION": 8,
}
STEP_OF_REASON = {
    "prefix": 1,
    "base45": 2,
    "zlib": 3,
    "too_large": 3,
    "cose_structure": 4,
    "unsupported_alg": 4,
    "unknown_kid": 4,
    "alg_key_mismatch": 4,
    "bad_signature": 4,
    "cwt_structure": 5,
    "hcert_structure": 5,
    "dsc_type_not_allowed": 6,
    "no_expiry": 7,
    "expired": 7,
    "not_yet_valid": 7,
    "dsc_expired": 7,
    "schema": 8,
}
VALID = 99

_CLOCK_BEFORE_IAT = (
    "VALIDATIONCLOCK lies before the vector's own iat and it sets no EXPECTEDEXPIRATIONCHECK, "
    "so its time was never tested: not_yet_valid is right"
)

#: Vectors whose own data contradict their flags: path → (our reason or None = valid, why).
OVERRIDES: dict[str, tuple[str | None, str]] = {
    "ES/401.json": (
        "alg_key_mismatch",
        "EXPECTEDVERIFY true, but alg ES256 with a P-384 DSC and a 96-byte signature: HCERT.md §5 "
        "allows P-256 only (pycose and python-cwt refuse it too)",
    ),
    "BG/1.json": (
        "hcert_structure",
        "EXPECTEDDECODE true, but the DCC holds v, t and r at once; exactly one is required "
        "(PAYLOAD.md; common/DGC2 expects this very shape to fail)",
    ),
    "IS/3.json": (
        None,
        "EXPECTEDKEYUSAGE false ('no key usage'), but the DSC's EKU holds only the non-DCC OID "
        "2.23.136.1.1.14.2, which allows every type for the reference verifiers (HCERT.md §7)",
    ),
    "LI/4.json": (
        "dsc_type_not_allowed",
        "a test certificate whose DSC's EKU allows vaccination only; the vector sets no "
        "EXPECTEDKEYUSAGE flag",
    ),
    "common/DGC1.json": (
        "hcert_structure",
        "only EXPECTEDSCHEMAVALIDATION false, against schema 1.0.0 (not checked, see below); "
        "the DCC has none of v/t/r, which the structure check refuses first",
    ),
    "common/DGC2.json": (
        "hcert_structure",
        "as DGC1, with v, t and r at once",
    ),
    "ES/1101.json": ("not_yet_valid", _CLOCK_BEFORE_IAT),
    "ES/2101.json": ("not_yet_valid", _CLOCK_BEFORE_IAT),
    "FR/vaccin_ok.json": ("not_yet_valid", _CLOCK_BEFORE_IAT),
    "FR/test_pcr_ok.json": (
        "not_yet_valid",
        _CLOCK_BEFORE_IAT + "; besides, its JSON says sc/dr two hours off its own CBOR",
    ),
}


def _vectors() -> list[str]:
    return sorted(str(p.relative_to(VECTORS)) for p in VECTORS.glob("*/*.json"))


def _flags(vector: dict[str, Any]) -> dict[str, bool]:
    """The flags this test checks. EXPECTEDSCHEMAVALIDATION counts only for vectors written
    against schema 1.3.x, the one ``--schema`` checks (1.0.0 had other rules, e.g. NL/060's
    ``co: ""`` was valid then)."""
    flags = {k: v for k, v in vector["EXPECTEDRESULTS"].items() if k in STEP_OF_FLAG}
    if not str(vector["TESTCTX"].get("SCHEMA", "")).startswith("1.3."):
        flags.pop("EXPECTEDSCHEMAVALIDATION", None)
    return flags


def disagreements(flags: dict[str, bool], reason: str | None) -> list[str]:
    """How a verdict (``reason``; None = valid) contradicts the flags; empty when it agrees."""
    step = VALID if reason is None else STEP_OF_REASON[reason]
    found = []
    for flag, expected in flags.items():
        if expected and step == STEP_OF_FLAG[flag]:
            found.append(f"{flag} is true, but {reason}")
        if not expected and step > STEP_OF_FLAG[flag]:
            found.append(f"{flag} is false, but {reason or 'valid'}")
    if reason is not None and not any(
        not expected and STEP_OF_FLAG[flag] >= step for flag, expected in flags.items()
    ):
        found.append(f"{reason}, but no flag expects a failure there")
    return found


def _run(tmp_path: Path, vector: dict[str, Any], schema: bool) -> tuple[int, dict[str, Any]]:
    der = base64.b64decode(vector["TESTCTX"]["CERTIFICATE"])
    certificate = x509.load_der_x509_certificate(der)
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "dsc.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "in.txt").write_text(vector["PREFIX"] + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    argv = ["verify", str(tmp_path / "in.txt"), "--trust-dir", str(trust), "--out", str(out)]
    argv += ["--at", vector["TESTCTX"]["VALIDATIONCLOCK"]] + (["--schema"] if schema else [])
    status = main(argv)
    (line,) = out.read_text(encoding="utf-8").splitlines()
    return status, json.loads(line)


@pytest.mark.parametrize("path", _vectors())
def test_vector_agrees_with_its_flags(tmp_path: Path, path: str) -> None:
    vector = json.loads((VECTORS / path).read_text(encoding="utf-8"))
    flags = _flags(vector)
    status, result = _run(tmp_path, vector, "EXPECTEDSCHEMAVALIDATION" in flags)
    reason = result.get("reason")
    assert status == (0 if result["valid"] else 1)
    assert result["valid"] is (reason is None)
    if path in OVERRIDES:
        assert reason == OVERRIDES[path][0], result["message"]
    else:
        assert disagreements(flags, reason) == [], result["message"]
        if flags.get("EXPECTEDVALIDJSON") and "payload" in result:
            assert result["payload"] == vector["JSON"]
    if result["valid"]:
        dsc = x509.load_der_x509_certificate(base64.b64decode(vector["TESTCTX"]["CERTIFICATE"]))
        assert hc1_verifies(vector["PREFIX"], dsc), "valid here, but pycose rejects it"


def test_subset_is_representative() -> None:
    paths = _vectors()
    assert 40 <= len(paths) <= 90
    assert len({p.split("/")[0] for p in paths} - {"common"}) >= 10
    assert set(OVERRIDES) <= set(paths), "an override names a vector that is not here"
    assert set(STEP_OF_REASON) == set(VERIFY_REASONS)


@pytest.mark.parametrize(
    ("flags", "reason", "agrees"),
    [
        ({"EXPECTEDVERIFY": True}, None, True),
        ({"EXPECTEDVERIFY": True}, "bad_signature", False),
        ({"EXPECTEDVERIFY": False}, None, False),
        ({"EXPECTEDVERIFY": False}, "zlib", True),  # failed even earlier
        ({"EXPECTEDVERIFY": True, "EXPECTEDEXPIRATIONCHECK": False}, "expired", True),
        ({"EXPECTEDVERIFY": True, "EXPECTEDEXPIRATIONCHECK": False}, "dsc_type_not_allowed", True),
        ({"EXPECTEDVERIFY": True}, "expired", False),  # nobody expected a failure
        ({"EXPECTEDKEYUSAGE": False}, "expired", False),  # key usage passed after all
    ],
)
def test_the_judge_itself(flags: dict[str, bool], reason: str | None, agrees: bool) -> None:
    assert (disagreements(flags, reason) == []) is agrees
