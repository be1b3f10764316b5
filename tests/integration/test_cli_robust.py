"""The client commands under faults (issue 9 §10 and §8): one line and exit 2 for usage,
connection and I/O errors, ``--resume`` without a line signed twice into the output, and
trust-list files only inside their directory. Real subprocesses against the session appliance."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509

from signer.bench.payloads import vaccination_payloads
from signer.client import WINDOW
from tests.conftest import Appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import (
    ROOT,
    ledger_records,
    read_jsonl,
    run_cli,
    to_json,
    wait_until,
)


def _refused_address() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _payload_file(path: Path, count: int, seed: int) -> list[str]:
    lines = [to_json(p) for p in vaccination_payloads(count, seed=seed)]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return lines


FAULTS = ("missing input", "unwritable --out", "refused", "no port", "--batch 0", "--ca missing")
COMMANDS = ("sign", "reissue", "trust-list", "verify --server", "validate")
EXPECTED = {
    "missing input": "FILE",
    "unwritable --out": "--out",
    "refused": "unavailable",
    "no port": "has no port",
    "--batch 0": "--batch 0",
    "--ca missing": "--ca",
}


def _applies(command: str, fault: str) -> bool:
    if fault in ("refused", "no port", "--ca missing"):
        return command != "validate"  # validate talks to no server
    if fault == "--batch 0":
        return command in ("sign", "reissue")
    return not (fault == "missing input" and command == "trust-list")  # trust-list reads none


def _case(command: str, fault: str, appliance: Appliance, tmp: Path) -> list[str]:
    """The command line of one command under one fault."""
    source = tmp / "in.jsonl"
    _payload_file(source, 2, seed=91)
    blocker = tmp / "a-file"
    blocker.write_text("")
    server = {"refused": _refused_address(), "no port": "127.0.0.1"}.get(fault, appliance.address)
    takes_server = command != "validate"
    name = command.split(maxsplit=1)[0]
    args = [name]
    if command != "trust-list":
        args.append(str(tmp / "absent.jsonl") if fault == "missing input" else str(source))
    out = blocker / "x" if fault == "unwritable --out" else tmp / "out"
    args += ["--out", str(out)]
    if takes_server:
        args += ["--server", server]
    if fault == "--batch 0":
        args += ["--batch", "0"]
    if fault == "--ca missing":
        args += ["--ca", str(tmp / "absent-ca.pem")]
    return args


@pytest.mark.parametrize(
    ("command", "fault"), [(c, f) for c in COMMANDS for f in FAULTS if _applies(c, f)]
)
def test_client_commands_fail_in_one_line_with_exit_2(
    appliance: Appliance, tmp_path: Path, command: str, fault: str
) -> None:
    args = _case(command, fault, appliance, tmp_path)
    run = run_cli(*args, timeout=120)

    assert run.returncode == 2, (args, run.returncode, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert EXPECTED[fault] in lines[0], lines[0]
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists() or fault in ("refused",), "written before failing"


@pytest.mark.parametrize("command", ["serve", "validate"])
@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nport = 99999\n", "[server] port = 99999: expected 0..65535"),
        ('[issuer.validity_days]\ntest = "365"\n', '[issuer.validity_days] test = "365": expected'),
        ("[issuer.validity_days]\ntest = 1.5\n", "test = 1.5: expected a whole number"),
        ("[server]\nprot = 1\n", "[server]: unknown key(s) prot (known: host, port,"),
        ("[server\n", "the config file is not valid TOML"),
    ],
)
def test_a_bad_config_is_one_line_naming_file_and_key(
    tmp_path: Path, command: str, toml: str, message: str
) -> None:
    config, source = tmp_path / "signer.toml", tmp_path / "in.jsonl"
    config.write_text(toml)
    _payload_file(source, 1, seed=90)
    args = ["serve", "--config", str(config)]
    if command == "validate":
        args = ["validate", str(source), "--config", str(config), "--out", str(tmp_path / "o")]

    run = run_cli(*args, timeout=120)

    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"error: {config}: ") and run.stderr.count("\n") == 1
    assert message in run.stderr


def test_nothing_is_signed_when_the_output_cannot_be_written(
    appliance: Appliance, tmp_path: Path
) -> None:
    """--out is opened before the first request: a bad path costs no signature."""
    source = tmp_path / "in.jsonl"
    _payload_file(source, 5, seed=92)
    (tmp_path / "a-file").write_text("")
    before = ledger_records(appliance.directory)

    run = run_cli(
        "sign", str(source), "--server", appliance.address, "--out", str(tmp_path / "a-file/x")
    )

    assert run.returncode == 2, run.stderr
    assert ledger_records(appliance.directory) == before


def _settled_ledger(appliance: Appliance) -> int:
    """The ledger's count once nothing more arrives (a killed client's batch may finish)."""
    last = [-1]

    def stable() -> int | None:
        now = ledger_records(appliance.directory)
        done = now if now == last[0] else None
        last[0] = now
        time.sleep(0.5)
        return done

    return wait_until(stable, 60, "the ledger to settle")


def _cut(path: Path, keep: int) -> None:
    """Keep ``keep`` whole lines and half of the next, as a run stopped mid-write leaves it."""
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:keep]) + lines[keep][: len(lines[keep]) // 2])


def _check_each_line_once(out: Path, expected: list[int]) -> list[dict[str, object]]:
    results = read_jsonl(out)
    assert [r["line"] for r in results] == expected
    return results


def test_resume_after_a_cut_signs_only_the_missing_lines(
    appliance: Appliance, tmp_path: Path
) -> None:
    """A complete run, then its output cut to 23 lines and half a line: the resumed run keeps
    the 23, sends exactly the other 36 (the ledger grows by 36) and exits 1 for the rejected
    line 3 it kept."""
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = _payload_file(source, 60, seed=93)
    lines[2] = '{"ver": "1.3.0"'  # line 3: not JSON
    source.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    args = ["sign", str(source), "--server", appliance.address, "--out", str(out)]
    first = run_cli(*args, "--batch", "10")
    assert first.returncode == 1, first.stderr
    complete = out.read_bytes()
    _cut(out, 23)
    before = _settled_ledger(appliance)

    resumed = run_cli(*args, "--batch", "7", "--resume")

    assert resumed.returncode == 1, resumed.stderr
    assert "resuming: 23 line(s)" in resumed.stderr and "(1 rejected)" in resumed.stderr
    assert "done: 37 of 37 items in " in resumed.stderr
    assert resumed.stderr.endswith(": 37 signed, 0 rejected\n")
    results = _check_each_line_once(out, list(range(1, 61)))
    kept = b"".join(complete.splitlines(keepends=True)[:23])
    assert out.read_bytes().startswith(kept)  # the kept lines are not signed again
    assert _settled_ledger(appliance) - before == 37
    _verify_all(appliance, [r for r in results if r["line"] != 3])


def _verify_all(appliance: Appliance, results: list[dict[str, object]]) -> None:
    dscs = appliance.dsc_by_kid()
    for result in results:
        kid = base64.b64decode(str(result["kid"]))
        assert hc1_verifies(str(result["hc1"]), dscs[kid]), result["line"]


def test_reissue_resumes_from_a_cut_output(appliance: Appliance, tmp_path: Path) -> None:
    source, signed, out = tmp_path / "in.jsonl", tmp_path / "signed.jsonl", tmp_path / "re.jsonl"
    _payload_file(source, 30, seed=94)
    sign = run_cli("sign", str(source), "--server", appliance.address, "--out", str(signed))
    assert sign.returncode == 0, sign.stderr
    args = ["reissue", str(signed), "--server", appliance.address, "--out", str(out)]
    assert run_cli(*args, "--batch", "8").returncode == 0
    _cut(out, 11)
    before = _settled_ledger(appliance)

    resumed = run_cli(*args, "--batch", "8", "--resume")

    assert resumed.returncode == 0, resumed.stderr
    results = _check_each_line_once(out, list(range(1, 31)))
    assert _settled_ledger(appliance) - before == 19
    _verify_all(appliance, results)


def test_sign_killed_part_way_resumes_with_each_line_once(
    appliance: Appliance, tmp_path: Path
) -> None:
    """``signer sign -`` reads a pipe kept open, so it cannot finish; it is SIGKILLed once 200
    lines are out. The resumed run answers every other line; the ledger holds at most the
    client's window of batches more than one uninterrupted run would."""
    count, batch = 2005, 10
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = _payload_file(source, count, seed=95)
    before = _settled_ledger(appliance)
    command = [sys.executable, "-m", "signer.cli", "sign", "-", "--quiet", "--batch", str(batch)]
    process = subprocess.Popen(
        [*command, "--server", appliance.address, "--out", str(out)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    feeder = threading.Thread(
        target=_feed, args=(process.stdin, "".join(line + "\n" for line in lines)), daemon=True
    )
    feeder.start()
    try:
        wait_until(
            lambda: True if out.exists() and out.read_bytes().count(b"\n") >= 200 else None,
            120,
            "200 lines of output",
        )
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    written = out.read_bytes().count(b"\n")
    assert written < count, "the run was not stopped part-way"

    resumed = run_cli(
        "sign", str(source), "--server", appliance.address, "--out", str(out), "--resume"
    )

    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {written} line(s)" in resumed.stderr
    results = _check_each_line_once(out, list(range(1, count + 1)))
    signed = _settled_ledger(appliance) - before
    assert count <= signed <= count + WINDOW * batch, signed
    _verify_all(appliance, results[:: count // 50])


def _feed(stdin: object, text: str) -> None:
    """Write ``text`` and keep the pipe open: the reader never sees the end of its input."""
    try:
        stdin.write(text.encode())  # type: ignore[attr-defined]
        stdin.flush()  # type: ignore[attr-defined]
    except BrokenPipeError:
        pass


def test_resume_refuses_an_output_that_is_not_ours(appliance: Appliance, tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _payload_file(source, 2, seed=96)
    out.write_text('{"line": 1, "id": "1", "hc1": "HC1:X"}\nnot a result\n')

    run = run_cli("sign", str(source), "--server", appliance.address, "--out", str(out), "--resume")

    assert run.returncode == 2
    assert run.stderr.startswith("error: --out") and "line 2 is not a result line" in run.stderr
    assert out.read_text().endswith("not a result\n"), "the file is left as it was"


def test_trust_list_writes_label_kid_files_and_never_through_a_link(
    appliance: Appliance, tmp_path: Path
) -> None:
    trust, outside = tmp_path / "trust", tmp_path / "outside.pem"
    listed = run_cli("trust-list", "--server", appliance.address, "--out", str(trust))
    assert listed.returncode == 0, listed.stderr
    entries = appliance.trust_list()
    names = sorted(p.name for p in trust.iterdir())
    assert names == sorted(f"{e.label}-{e.kid.hex()}.pem" for e in entries)
    for entry in entries:
        pem = (trust / f"{entry.label}-{entry.kid.hex()}.pem").read_bytes()
        assert x509.load_pem_x509_certificate(pem) == x509.load_der_x509_certificate(
            entry.certificate_der
        )

    outside.write_text("keep me")
    planted = trust / names[0]
    planted.unlink()
    planted.symlink_to(outside)
    again = run_cli("trust-list", "--server", appliance.address, "--out", str(trust))

    assert again.returncode == 2
    assert again.stderr.startswith("error: --out") and "symbolic link" in again.stderr
    assert outside.read_text() == "keep me"
    assert planted.is_symlink()
