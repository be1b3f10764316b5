"""``signer validate``: every offline error code reachable, exit codes, output order, reports."""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from signer.cli import main
from signer.hcert.validation import ERROR_CODES
from signer.service import SERVICE_ERROR_CODES
from signer.validate._check import VALIDATE_ERROR_CODES
from signer.validate._run import Progress

SAMPLE = Path(__file__).parents[1] / "vectors" / "sample.jsonl"
STRICT = """\
[validation]
deprecated_codes = "refuse"
uvci_country = "VN"
name_deny_list = ["DENIED"]
"""


def _base() -> dict[str, Any]:
    """Line 1 of the sample: a valid vaccination of a VN issuer."""
    first: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8").splitlines()[0])
    assert "v" in first
    return first


def _edit(**changes: Any) -> str:
    """Line 1 with ``nam``/``v[0]`` fields replaced (None deletes) or top-level keys set."""
    payload = copy.deepcopy(_base())
    for key, value in changes.items():
        place = payload["nam"] if key in ("fn", "fnt", "gn", "gnt") else payload
        if key in ("dt", "dn", "mp", "ci", "is", "co", "tg"):
            place = payload["v"][0]
        if value is None:
            del place[key]
        else:
            place[key] = value
    return json.dumps(payload, ensure_ascii=False)


#: code → the bad line that must produce it under the STRICT config.
BAD_LINES: dict[str, str] = {
    "json": '{"ver": "1.3.0", ',
    "too_large": _edit(padding="x" * 20_000),
    "type": _edit(dn=True),
    "required": _edit(dob=None),
    "format": _edit(dt="2021-02-30"),
    "max_length": _edit(**{"is": "B" * 81}),
    "value_set": _edit(co="XX"),
    "deprecated_code": _edit(mp="VLA2001"),
    "range": _edit(dn=0),
    "date_order": _edit(dt="1990-01-01"),
    "future_date": _edit(dt="2999-01-01"),
    "transliteration_mismatch": _edit(fnt="NGUYEN"),
    "transliteration_unsupported": _edit(fn="Иванов", fnt=None),
    "uvci_format": _edit(ci="urn:uvci:01:vn:abc"),
    "uvci_checksum": _edit(ci="URN:UVCI:01:NL:187/37512422923#Y"),
    "uvci_country": _edit(ci="URN:UVCI:01:DE:ABC"),
    "unsupported_version": _edit(ver="2.0.0"),
    "group": _edit(t=[{}]),
    "implausible": _edit(dob="1900-01-01"),
    "denied_name": _edit(fn="Denied", fnt="DENIED"),
    "duplicate_uvci": _edit(),  # line 1 again
}
#: Codes the offline path cannot produce: signing needs a key, a client's type policy.
ONLINE_ONLY = {
    "no_key",
    "dsc_validity",
    "dsc_not_yet_valid",
    "digest_length",
    "hc1_outside_key_period",
}


def _run(tmp_path: Path, lines: list[str], *extra: str, config: str = STRICT) -> tuple[int, Path]:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    conf = tmp_path / "strict.toml"
    conf.write_text(config, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    status = main(["validate", str(source), "--config", str(conf), "--out", str(out), *extra])
    return status, out


def _results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_the_sample_is_valid(tmp_path: Path) -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    status, out = _run(tmp_path, lines)
    assert status == 0
    results = _results(out)
    assert [r["line"] for r in results] == list(range(1, len(lines) + 1))
    assert all(r["valid"] is True for r in results)


def test_every_offline_code_is_reachable(tmp_path: Path) -> None:
    assert set(BAD_LINES) == (set(ERROR_CODES) | set(SERVICE_ERROR_CODES)) - ONLINE_ONLY - {
        "transliteration_unchecked"  # a warning, checked below
    }
    assert set(VALIDATE_ERROR_CODES) == {"utf8"}  # bytes, not text: its own test below
    codes = list(BAD_LINES)
    status, out = _run(tmp_path, [_base_line(), *BAD_LINES.values()])
    assert status == 1
    results = _results(out)
    assert len(results) == len(codes) + 1
    assert results[0]["valid"] is True
    for code, result in zip(codes, results[1:], strict=True):
        found = {e["code"] for e in result.get("errors", [])}
        assert code in found, (code, result)
    assert results[-1]["errors"][0]["path"] == "/v/0/ci"


def test_a_warning_leaves_the_record_valid(tmp_path: Path) -> None:
    status, out = _run(tmp_path, [_edit(fn="Иванов", fnt="IVANOV")])
    assert status == 0
    [result] = _results(out)
    assert result["valid"] is True
    assert [w["code"] for w in result["warnings"]] == ["transliteration_unchecked"]


def _base_line() -> str:
    return json.dumps(_base(), ensure_ascii=False)


def test_blank_lines_keep_their_numbers(tmp_path: Path) -> None:
    status, out = _run(tmp_path, [_base_line(), "", _edit(dn=0)])
    assert status == 1
    assert [(r["line"], r["id"], "errors" in r) for r in _results(out)] == [
        (1, "1", False),
        (3, "3", True),
    ]


def test_usage_and_io_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    status, _ = _run(tmp_path, [_base_line()], "--processes", "0")
    assert status == 2
    assert main(["validate", str(SAMPLE), "--config", str(tmp_path / "none.toml")]) == 2


def test_html_report_and_csv(tmp_path: Path) -> None:
    lines = [_base_line(), _edit(dn=0), _edit(dn=0), _edit(dob=None, co="XX")]
    report, table = tmp_path / "r.html", tmp_path / "r.csv"
    status, _ = _run(tmp_path, lines, "--report", str(report), "--csv", str(table))
    assert status == 1

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.text: list[str] = []
            self.tags: set[str] = set()

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.add(tag)

        def handle_data(self, data: str) -> None:
            self.text.append(data)

    page = Cells()
    page.feed(report.read_text(encoding="utf-8"))
    assert "script" not in page.tags
    assert "table" in page.tags
    top = page.text.index("Top error codes")
    assert page.text[top + 1] == "range"  # the most frequent code leads the chart

    with table.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["line"], r["code"], r["path"]) for r in rows] == [
        ("2", "range", "/v/0/dn"),
        ("3", "range", "/v/0/dn"),
        ("4", "required", "/dob"),
        ("4", "value_set", "/v/0/co"),
    ]


def test_summary_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(tmp_path, [_base_line(), _edit(dn=0), _edit(dn=0)], "--quiet")
    err = capsys.readouterr().err
    assert "3 record(s), 1 valid, 2 rejected (66.7 %)" in err
    assert any(line.startswith("range") and line.endswith("2, 3") for line in err.splitlines())


def test_processes_1_and_2_give_the_same_output(tmp_path: Path) -> None:
    # Over several chunks of 2000 lines, with a UVCI repeated across chunks.
    base = _base()
    lines = []
    for n in range(4500):
        payload = copy.deepcopy(base)
        payload["v"][0]["ci"] = f"URN:UVCI:01:VN:ABC{n % 4000}"
        payload["v"][0]["dn"] = 0 if n % 10 == 3 else 1
        lines.append(json.dumps(payload, ensure_ascii=False))
    one = tmp_path / "one"
    two = tmp_path / "two"
    one.mkdir()
    two.mkdir()
    status_one, out_one = _run(one, lines, "--processes", "1", "--quiet")
    status_two, out_two = _run(two, lines, "--processes", "2", "--quiet")
    assert status_one == status_two == 1
    assert out_one.read_bytes() == out_two.read_bytes()
    results = _results(out_one)
    assert [r["line"] for r in results] == list(range(1, 4501))
    assert results[4001]["errors"][0]["code"] == "duplicate_uvci"


def test_a_line_that_is_not_utf8_is_rejected_and_the_file_goes_on(tmp_path: Path) -> None:
    good = _base_line().encode()
    bad = good.replace(b'"ver"', b'"v\xe9r"', 1)  # a Latin-1 é inside valid UTF-8 text
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b"\n".join([good, bad, good]) + b"\n")
    out = tmp_path / "out.jsonl"
    conf = tmp_path / "strict.toml"
    conf.write_text(STRICT, encoding="utf-8")
    status = main(["validate", str(source), "--config", str(conf), "--out", str(out), "--quiet"])
    assert status == 1
    results = _results(out)
    assert [r["line"] for r in results] == [1, 2, 3]
    [error] = results[1]["errors"]
    assert error["code"] == "utf8" and error["path"] == ""
    where = bad.decode("utf-8", "replace").index("\ufffd") + 1
    assert f"(byte 0xe9 at character {where})" in error["message"]
    assert results[0]["valid"] is True
    assert [e["code"] for e in results[2]["errors"]] == ["duplicate_uvci"]  # line 1 again


def test_a_non_utf8_line_on_stdin(tmp_path: Path) -> None:
    conf = tmp_path / "strict.toml"
    conf.write_text(STRICT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "signer.cli", "validate", "-", "--config", str(conf), "--quiet"],
        input=_base_line().encode() + b"\n" + b'{"ver": "1.3.0\xff"}\n',
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert lines[0]["valid"] is True
    assert [e["code"] for e in lines[1]["errors"]] == ["utf8"]


def test_progress_shows_rate_and_eta_then_a_final_line() -> None:
    stream = io.StringIO()
    meter = Progress(stream, total_bytes=1000, every=0.0)
    meter.update(100, 250)
    meter.update(400, 1000, final=True)
    first, final = stream.getvalue().splitlines()
    assert first.startswith("100 records, ") and "/s, ETA " in first
    assert final.startswith("400 records, ") and "ETA" not in final


def test_progress_is_written_during_a_long_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI on a file of several chunks: progress lines with an ETA, not only the
    final count (the interval is shortened so the test need not run for seconds)."""
    real = Progress.__init__

    def every_chunk(
        self: Progress, stream: Any, total: int | None, every: float | None = None
    ) -> None:
        real(self, stream, total, 0.0)

    monkeypatch.setattr(Progress, "__init__", every_chunk)
    _run(tmp_path, [_base_line()] * 5000, "--processes", "1")
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("2000 records") and "ETA" in line for line in err), err
    assert any(line.startswith("5000 records") for line in err), err
