"""``--report`` (one self-contained HTML page, no JavaScript) and ``--csv`` of a validate run."""

from __future__ import annotations

import csv
from html import escape
from typing import IO

from signer.hcert.validation import ERROR_CODES
from signer.service import SERVICE_ERROR_CODES
from signer.validate._check import VALIDATE_ERROR_CODES
from signer.validate._summary import Summary

_TOP_CHART = 10
_STYLE = """
body{font-family:sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.n{text-align:right}
.bar{background:#c0392b;height:1em}
"""


def _meaning(code: str) -> str:
    return (
        ERROR_CODES.get(code) or SERVICE_ERROR_CODES.get(code) or VALIDATE_ERROR_CODES.get(code, "")
    )


def write_html(summary: Summary, source: str, out: IO[str]) -> None:
    """Tables by code and by path, and a bar chart of the top codes made of CSS widths."""
    top = summary.errors_by_code.most_common(_TOP_CHART)
    most = top[0][1] if top else 1
    bars = "".join(
        f"<tr><td>{escape(code)}</td><td style='width:30em'>"
        f"<div class='bar' style='width:{100 * count / most:.1f}%'></div></td>"
        f"<td class='n'>{count}</td></tr>"
        for code, count in top
    )
    codes = "".join(
        f"<tr><td>{escape(code)}</td><td>{escape(_meaning(code))}</td>"
        f"<td class='n'>{count}</td><td class='n'>{summary.records_by_code[code]}</td>"
        f"<td class='n'>{summary.share(summary.records_by_code[code]):.1f} %</td>"
        f"<td>{', '.join(map(str, summary.examples[code]))}</td></tr>"
        for code, count in summary.errors_by_code.most_common()
    )
    paths = "".join(
        f"<tr><td>{escape(path)}</td><td class='n'>{count}</td></tr>"
        for path, count in summary.errors_by_path.most_common()
    )
    out.write(
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>signer validate: {escape(source)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Validation of {escape(source)}</h1>"
        f"<p>{summary.records} record(s), {summary.records - summary.rejected} valid, "
        f"{summary.rejected} rejected ({summary.share(summary.rejected):.1f} %).</p>"
        f"<h2>Top error codes</h2><table>{bars}</table>"
        "<h2>By error code</h2><table><tr><th>code</th><th>meaning</th><th>errors</th>"
        f"<th>records</th><th>share</th><th>example lines</th></tr>{codes}</table>"
        f"<h2>By JSON path</h2><table><tr><th>path</th><th>errors</th></tr>{paths}</table>"
        "</body></html>\n"
    )


class CsvErrors:
    """One row per (rejected record, error): line, id, code, path."""

    def __init__(self, out: IO[str]) -> None:
        self._writer = csv.writer(out)
        self._writer.writerow(["line", "id", "code", "path"])

    def add(self, line: int, faults: tuple[tuple[str, str], ...]) -> None:
        for code, path in faults:
            self._writer.writerow([line, str(line), code, path])
