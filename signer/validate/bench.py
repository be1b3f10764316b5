"""``python -m signer.validate.bench N``: ``signer validate`` against a bare JSON loop.

Generates N records (about 10 % bad) from tests/vectors-like payloads into a temporary file, times
``signer validate`` over it (a subprocess, default worker count) and a one-process
``json.loads`` + ``json.dumps`` loop over the same file, and prints both rates, their ratio and
the peak RSS of each (``resource.getrusage``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

_BASE: dict[str, Any] = {
    "ver": "1.3.0",
    "nam": {"fn": "Bùi", "fnt": "BUI", "gn": "Hữu Nhung", "gnt": "HUU<NHUNG"},
    "dob": "2003-02-12",
    "v": [
        {
            "tg": "840539006",
            "vp": "1119305005",
            "mp": "Covishield",
            "ma": "ORG-100001981",
            "dn": 1,
            "sd": 2,
            "dt": "2021-09-07",
            "co": "VN",
            "is": "Bộ Y tế Việt Nam (Ministry of Health of Viet Nam)",
            "ci": "",
        }
    ],
}


def generate(count: int, out: IO[str]) -> None:
    """``count`` lines; every tenth is bad in one of three ways (range, value set, JSON)."""
    entry = _BASE["v"][0]
    for n in range(count):
        record = {**_BASE, "v": [{**entry, "ci": f"URN:UVCI:01:VN:BENCH{n}"}]}
        bad = n % 10 == 9
        if bad and n % 30 == 9:
            record["v"][0]["dn"] = 0
        elif bad and n % 30 == 19:
            record["v"][0]["co"] = "XX"
        line = json.dumps(record, ensure_ascii=False)
        out.write((line[:-5] if bad and n % 30 == 29 else line) + "\n")


def plain_loop(source: Path, target: Path) -> int:
    """The floor: parse and re-serialise each line in one process."""
    count = 0
    with source.open(encoding="utf-8") as f, target.open("w", encoding="utf-8") as out:
        for line in f:
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                value = None
            out.write(json.dumps(value, ensure_ascii=False) + "\n")
            count += 1
    return count


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print(
            "usage: python -m signer.validate.bench N   (N records, e.g. 200000)", file=sys.stderr
        )
        return 2
    count = int(argv[0])
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "records.jsonl", Path(tmp) / "out.jsonl"
        with source.open("w", encoding="utf-8") as f:
            generate(count, f)
        command = [sys.executable, "-m", "signer.cli", "validate", str(source), "--out", str(out)]
        started = time.perf_counter()
        status = subprocess.run(
            [*command, "--quiet"], stderr=subprocess.DEVNULL, check=False
        ).returncode
        validate_s = time.perf_counter() - started
        validate_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        plain_loop(source, out)
        plain_s = time.perf_counter() - started
        plain_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    processes = len(os.sched_getaffinity(0))
    print(f"records            {count} (~10 % bad), exit status {status}")
    print(f"signer validate    {count / validate_s:,.0f} records/s ({processes} processes)")
    print(f"json loads+dumps   {count / plain_s:,.0f} records/s (1 process)")
    print(f"ratio              {plain_s / validate_s:.2f} (validate rate / plain rate)")
    print(
        f"peak RSS           validate {validate_rss / 1024:.0f} MiB (largest process), "
        f"plain loop {plain_rss / 1024:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
