"""Start and stop real appliances again and again; count the starts that hit HSM trouble.

Issue 9 §12: ``make test`` failed about once in seven runs with ``cannot list tokens …
GeneralError`` while a worker started. Each round here starts ``signer serve`` on a fresh dev
token (``tests/conftest.py`` ``start_appliance``) with ``--workers`` sessions, waits for
SERVING, signs one certificate (checked with pycose), stops it with SIGTERM and reads its log::

    .venv/bin/python -m tests.start_loop --rounds 50 --workers 4

A round is bad when the log shows a failed login or list, a worker that lost the HSM, or a
traceback; the exit status is 1 when any round was bad. Rounds and time are bounded.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from signer.bench.payloads import vaccination_payloads
from tests.conftest import start_appliance, stop_appliance, wait_serving
from tests.independent import hc1_verifies
from tests.integration.helpers import sign_one, to_json

#: What a start without HSM trouble never logs.
TROUBLE = re.compile(
    r"cannot list tokens|cannot log in|no token labelled|GeneralError|login attempt \d+ .*failed"
    r"|lost the HSM|Traceback"
)


def one_round(directory: Path, workers: int) -> list[str]:
    """The log lines of trouble of one start, sign and stop."""
    appliance, process = start_appliance(directory, workers=workers, key_algorithms=("ES256",))
    try:
        wait_serving(appliance, timeout=120)
        result = sign_one(appliance.address, to_json(vaccination_payloads(1, seed=5)[0]))
        dscs = appliance.dsc_by_kid()
        if not (
            result.HasField("signed") and hc1_verifies(result.signed.hc1, dscs[result.signed.kid])
        ):
            return [f"not signed: {result}"]
    finally:
        stop_appliance(process)
    log = (directory / "serve.log").read_text(errors="replace")
    return [line for line in log.splitlines() if TROUBLE.search(line)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-minutes", type=float, default=30.0)
    args = parser.parse_args()
    bad = 0
    end = time.monotonic() + args.max_minutes * 60
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="start-loop-") as base:
        done = 0
        for number in range(args.rounds):
            if time.monotonic() > end:
                print(f"time is up after {number} rounds")
                break
            trouble = one_round(Path(base) / f"r{number}", args.workers)
            done += 1
            if trouble:
                bad += 1
                print(f"round {number}: {len(trouble)} line(s) of trouble, first: {trouble[0]}")
    print(
        f"{done} rounds with {args.workers} workers in {time.monotonic() - started:.0f} s: "
        f"{bad} with HSM trouble"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
