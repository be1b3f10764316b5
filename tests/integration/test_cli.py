"""The ``signer`` command as a user runs it: subprocesses against the session appliance."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer.bench.payloads import vaccination_payloads
from signer.hcert.verify import TrustStore, verify_hc1
from tests.conftest import Appliance
from tests.independent import hc1_claims, hc1_verifies
from tests.integration.helpers import kid_of_der, read_jsonl, run_cli, to_json

COMMANDS = ("serve", "sign", "trust-list", "bench")


def test_sign_1000_payloads_and_verify_against_the_trust_list(
    appliance: Appliance, tmp_path: Path
) -> None:
    """The issue's done criterion: 1,000 realistic payloads in, 1,000 verifiable HC1s out."""
    payloads = vaccination_payloads(1000, seed=1000)
    source, out, trust_dir = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "trust"
    source.write_text("".join(to_json(p) + "\n" for p in payloads), encoding="utf-8")

    # --batch 300 leaves a last, partial batch of 100.
    signed = run_cli("sign", str(source), "--server", appliance.address, "--out", str(out))
    signed_300 = run_cli(
        "sign", str(source), "--server", appliance.address, "--out", f"{out}.300", "--batch", "300"
    )
    assert signed.returncode == 0, signed.stderr
    assert signed_300.returncode == 0, signed_300.stderr
    assert signed.stdout == ""  # results go to --out
    assert re.search(
        r"^done: 1,000 of 1,000 items in \d+ s \([\d,]+/s\): 1,000 signed, 0 rejected$",
        signed.stderr,
        re.MULTILINE,
    ), signed.stderr

    listed = run_cli("trust-list", "--server", appliance.address, "--out", str(trust_dir))
    assert listed.returncode == 0, listed.stderr
    pems = sorted(trust_dir.glob("*.pem"))
    dscs: dict[bytes, x509.Certificate] = {}
    for pem in pems:
        (certificate,) = x509.load_pem_x509_certificates(pem.read_bytes())
        kid = kid_of_der(certificate.public_bytes(serialization.Encoding.DER))
        assert kid.hex() in pem.name
        assert kid.hex() in listed.stdout
        dscs[kid] = certificate
    assert len(pems) == len(dscs) == len(appliance.trust_list()) == 2
    store = TrustStore.load_pem_dir(trust_dir)
    assert len(store) == 2

    results = read_jsonl(out)
    assert [r["line"] for r in results] == list(range(1, 1001))
    assert [r["id"] for r in results] == [str(n) for n in range(1, 1001)]
    for result, payload in zip(results, payloads, strict=True):
        assert "errors" not in result, result
        hc1, kid = result["hc1"], base64.b64decode(result["kid"])
        assert result["alg"] == "ES256"
        assert hc1_verifies(hc1, dscs[kid]), result["line"]
        verdict = verify_hc1(hc1, store)
        assert verdict.ok, (result["line"], verdict.message)
        assert hc1_claims(hc1)[-260][1] == payload

    partial = read_jsonl(Path(f"{out}.300"))
    assert [r["line"] for r in partial] == list(range(1, 1001))
    assert all(verify_hc1(r["hc1"], store).ok for r in partial)


_STATUS = re.compile(
    r"^[\d,]+ of (?P<total>[\d,]+) items \(\d+ %\), [\d,]+/s, .* elapsed(, ETA .*)?: "
    r"[\d,]+ signed, [\d,]+ rejected$"
)


def _summary(stderr: str, total: int, signed: int, rejected: int) -> None:
    """Progress on stderr: status lines (not a terminal here, so whole lines, every few
    seconds) and one summary line at the end, with the total."""
    lines = stderr.splitlines()
    assert lines, "no progress at all"
    assert re.fullmatch(
        rf"done: {total:,} of {total:,} items in \d+ s \([\d,]+/s\): "
        rf"{signed:,} signed, {rejected:,} rejected",
        lines[-1],
    ), lines[-1]
    for line in lines[:-1]:
        assert (found := _STATUS.match(line)) and found["total"] == f"{total:,}", line


def test_sign_and_reissue_show_progress_with_the_total_on_stderr_only(
    appliance: Appliance, tmp_path: Path
) -> None:
    """Results alone on stdout (every line JSON), progress on stderr ending in one summary line
    that names the total: the file's non-blank lines, a rejected one included."""
    lines = [to_json(p) for p in vaccination_payloads(1200, seed=77)]
    lines[600] = '{"ver": "1.3.0"'  # not JSON: rejected, still counted
    source, signed_out = tmp_path / "in.jsonl", tmp_path / "signed.jsonl"
    source.write_text("\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]) + "\n")

    signed = run_cli("sign", str(source), "--server", appliance.address, "--batch", "100")

    assert signed.returncode == 1, signed.stderr
    _summary(signed.stderr, 1200, 1199, 1)
    results = [json.loads(line) for line in signed.stdout.splitlines()]
    assert len(results) == 1200
    signed_out.write_text(signed.stdout)
    reissued = run_cli("reissue", str(signed_out), "--server", appliance.address)
    assert reissued.returncode == 1, reissued.stderr  # the rejected line has no hc1
    _summary(reissued.stderr, 1200, 1199, 1)
    dscs = appliance.dsc_by_kid()
    renewed = [json.loads(line) for line in reissued.stdout.splitlines()]
    for result in (r for r in results + renewed if "hc1" in r):
        assert hc1_verifies(result["hc1"], dscs[base64.b64decode(result["kid"])]), result["line"]
    assert sum("hc1" in r for r in renewed) == 1199


def test_sign_with_a_bad_line_exits_1_and_names_the_line(
    appliance: Appliance, tmp_path: Path
) -> None:
    good = [to_json(p) for p in vaccination_payloads(3, seed=5)]
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    # line 2 is blank (skipped, but it still counts), line 4 is not JSON
    source.write_text(f'{good[0]}\n\n{good[1]}\n{{"ver": "1.3.0",\n{good[2]}\n', encoding="utf-8")

    run = run_cli("sign", str(source), "--server", appliance.address, "--out", str(out))

    assert run.returncode == 1, run.stderr
    results = read_jsonl(out)
    assert [r["line"] for r in results] == [1, 3, 4, 5]
    by_line = {r["line"]: r for r in results}
    assert all("hc1" in by_line[n] for n in (1, 3, 5))
    errors = by_line[4]["errors"]
    assert [e["code"] for e in errors] == ["json"]
    assert errors[0]["path"] == "" and errors[0]["message"]
    assert "hc1" not in by_line[4]
    assert "1 rejected" in run.stderr


def test_sign_reports_a_line_that_is_not_utf8_and_signs_the_rest(
    appliance: Appliance, tmp_path: Path
) -> None:
    """A Latin-1 byte in line 2 cannot go on the wire (protobuf strings are UTF-8): that line
    gets a utf8 error from the client, in its place, and the lines around it are signed; a
    batch boundary right after it keeps the order."""
    good = [to_json(p).encode() for p in vaccination_payloads(4, seed=6)]
    bad = good[1].replace(b'"ver"', b'"v\xe9r"', 1)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(b"\n".join([good[0], bad, good[2], good[3]]) + b"\n")

    run = run_cli(
        "sign", str(source), "--server", appliance.address, "--out", str(out), "--batch", "2"
    )

    assert run.returncode == 1, run.stderr
    results = read_jsonl(out)
    assert [r["line"] for r in results] == [1, 2, 3, 4]
    assert [e["code"] for e in results[1]["errors"]] == ["utf8"]
    assert "byte 0xe9" in results[1]["errors"][0]["message"]
    dscs = {kid_of_der(der): der for der in _trust_ders(appliance)}
    for n in (0, 2, 3):
        kid = base64.b64decode(results[n]["kid"])
        assert hc1_verifies(results[n]["hc1"], x509.load_der_x509_certificate(dscs[kid]))


def _trust_ders(appliance: Appliance) -> list[bytes]:
    return [entry.certificate_der for entry in appliance.trust_list()]


def test_help_of_every_command(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("signer")
    assert script.exists(), f"the console script {script} is missing: pip install -e ."
    top = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert top.returncode == 0, top.stderr
    for command in COMMANDS:
        assert command in top.stdout

    options = {
        "serve": ("--config", "--port", "--sessions", "--tls-cert", "--client-ca", "--ready-file"),
        "sign": ("--server", "--out", "--batch", "--alg", "--quiet"),
        "trust-list": ("--server", "--out"),
        "bench": ("--items", "--batch", "--concurrency", "--connections", "--runs", "--tls"),
    }
    for command in COMMANDS:
        shown = subprocess.run(
            [str(script), command, "--help"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert shown.returncode == 0, (command, shown.stderr)
        assert shown.stdout.startswith(f"usage: signer {command}"), shown.stdout[:80]
        for option in options[command]:
            assert option in shown.stdout, (command, option)


@pytest.mark.parametrize("key", ["pin", "user_pin", "so_pin"])
def test_serve_refuses_a_pin_in_the_config_file(tmp_path: Path, key: str) -> None:
    secret = "40413-not-a-real-pin"
    config = tmp_path / "signer.toml"
    config.write_text(
        f"""
[server]
port = 0
metrics_port = 0

[hsm]
pin_env = ""
{key} = "{secret}"

[dev]
bootstrap = true
directory = "{tmp_path / "dev"}"
"""
    )
    run = run_cli("serve", "--config", str(config), timeout=60)

    assert run.returncode != 0
    assert "PINs never go in the config file" in run.stderr
    assert secret not in run.stdout + run.stderr
    assert not (tmp_path / "dev").exists(), "nothing may be created before the config is accepted"
