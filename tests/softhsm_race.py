"""Processes that log in to one SoftHSM token while others list its tokens (issue 9 §12).

SoftHSM 2.6.1 rewrites ``token.object`` on every C_Login and lets readers see it empty for a
moment (``hsm/_softhsm.py`` ``token_store_lock``). ``--raw`` calls python-pkcs11 directly, as
the workers did before the lock, and shows the defect; the default goes through ``HsmToken``,
which holds the token store's lock, and must count no error::

    .venv/bin/python -m tests.softhsm_race --seconds 10 --raw   # thousands of errors
    .venv/bin/python -m tests.softhsm_race --seconds 10         # none

Each process runs for a bounded time; a reader whose library went bad finalises and
initialises it again, so it keeps counting.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hsm import HsmError, HsmToken, SoftHsm, find_softhsm_module

LABEL, PIN, SO_PIN = "race", "1234", "5678"


@dataclass
class Tally:
    role: str
    calls: int = 0
    errors: Counter[str] = field(default_factory=Counter)


def make_token(directory: Path) -> None:
    """A fresh token ``race`` in ``directory``; SOFTHSM2_CONF is set for the children."""
    softhsm = SoftHsm(directory)
    softhsm.ensure_layout()
    softhsm.activate()
    softhsm.init_token(LABEL, PIN, SO_PIN)


def login_loop(seconds: float, raw: bool) -> Tally:
    """Log in and out again and again: each C_Login rewrites token.object."""
    module = find_softhsm_module()
    assert module is not None
    tally = Tally("login")
    end = time.monotonic() + seconds
    if raw:
        import pkcs11

        lib = pkcs11.lib(module)
        while time.monotonic() < end:
            try:
                lib.get_token(token_label=LABEL).open(rw=True, user_pin=PIN).close()
                tally.calls += 1
            except pkcs11.PKCS11Error as e:
                tally.errors[type(e).__name__] += 1
                lib.reinitialize()
        return tally
    while time.monotonic() < end:
        try:
            HsmToken(module, LABEL, PIN).close()  # the last session closed: logged out
            tally.calls += 1
        except HsmError as e:
            tally.errors[e.code or "NONE"] += 1
    return tally


def list_loop(seconds: float, raw: bool) -> Tally:
    """List the tokens (C_GetSlotList, C_GetTokenInfo) as a worker's refresh does."""
    module = find_softhsm_module()
    assert module is not None
    tally = Tally("list")
    end = time.monotonic() + seconds
    if raw:
        import pkcs11

        lib = pkcs11.lib(module)
        while time.monotonic() < end:
            try:
                lib.get_token(token_label=LABEL)
                tally.calls += 1
            except pkcs11.PKCS11Error as e:
                tally.errors[type(e).__name__] += 1
                lib.reinitialize()
        return tally
    token = HsmToken(module, LABEL, PIN)
    while time.monotonic() < end:
        try:
            token.check()
            tally.calls += 1
        except HsmError as e:
            tally.errors[e.code or "NONE"] += 1
            token.finalize()
            token = HsmToken(module, LABEL, PIN)
    token.close()
    return tally


def race(directory: Path, seconds: float, raw: bool, pairs: int = 2) -> list[Tally]:
    """``pairs`` login loops and ``pairs`` listing loops at once on a fresh token."""
    make_token(directory)
    context = multiprocessing.get_context("spawn")
    with context.Pool(2 * pairs) as pool:
        runs = [pool.apply_async(login_loop, (seconds, raw)) for _ in range(pairs)]
        runs += [pool.apply_async(list_loop, (seconds, raw)) for _ in range(pairs)]
        return [run.get(timeout=seconds + 120) for run in runs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--raw", action="store_true", help="python-pkcs11 without the lock")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="softhsm-race-") as directory:
        tallies = race(Path(directory), args.seconds, args.raw)
    for tally in tallies:
        print(f"{tally.role:6} calls {tally.calls:6}  errors {dict(tally.errors)}")
    return 1 if any(t.errors for t in tallies) else 0


if __name__ == "__main__":
    raise SystemExit(main())
