"""Test-only fault injection: faults SoftHSM cannot produce on its own (issue 9 §3).

Enabled only when the environment variable ``HCERT_TEST_HSM_FAULTS`` names a directory **and**
the module is SoftHSM (``libsofthsm2.so``): no production config can turn it on, since a vendor
module ignores the variable, and nothing in the appliance, its Dockerfile or its manifests sets
it. When enabled, every process that opens a token logs one warning line saying so.

The faults are real PKCS#11 failures, not simulated return values: a test writes
``close-session`` into the directory with a count N; the first signing process to claim the file
(an atomic rename, so exactly one worker does) lets N more signatures through and then closes
its own session behind the appliance's back with C_CloseSession, as a network HSM's fail-over
does. The next call gets CKR_SESSION_HANDLE_INVALID from SoftHSM itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

ENV = "HCERT_TEST_HSM_FAULTS"
#: Milliseconds to wait, off the CPU, before every signature: a network HSM's round trip
#: (issue 7 §7: with it, sessions rather than cores set the pace). Test and benchmark only.
LATENCY_ENV = "HCERT_TEST_HSM_LATENCY_MS"
CLOSE_SESSION = "close-session"

log = logging.getLogger(__name__)


class FaultInjector:
    def __init__(self, directory: Path, close_session: Callable[[], None]) -> None:
        self._directory = directory
        self._close_session = close_session
        self._countdown: int | None = None

    def before_sign(self) -> None:
        if self._countdown is None:
            self._countdown = self._claim()
            if self._countdown is None:
                return
        if self._countdown == 0:
            self._countdown = None
            log.warning("TEST FAULT: closing this process's PKCS#11 session")
            self._close_session()
            return
        self._countdown -= 1

    def _claim(self) -> int | None:
        source = self._directory / CLOSE_SESSION
        if not source.exists():
            return None
        claimed = self._directory / f"{CLOSE_SESSION}.claimed-{os.getpid()}"
        try:
            source.rename(claimed)  # atomic: one process wins
        except OSError:
            return None
        with contextlib.suppress(ValueError):
            return max(0, int(claimed.read_text().strip() or "0"))
        return 0


def injector_for(module_path: str, close_session: Callable[[], None]) -> FaultInjector | None:
    """A :class:`FaultInjector` when the test variable is set and the module is SoftHSM."""
    directory = os.environ.get(ENV, "")
    if not directory or Path(module_path).name != "libsofthsm2.so":
        return None
    log.warning(
        "TEST FAULT INJECTION ENABLED (%s=%s): never set this in production", ENV, directory
    )
    return FaultInjector(Path(directory), close_session)


def latency_for(module_path: str) -> Callable[[], None] | None:
    """A hook that sleeps ``HCERT_TEST_HSM_LATENCY_MS`` before each signature, when that is set
    and the module is SoftHSM (the same two conditions as the faults above)."""
    value = os.environ.get(LATENCY_ENV, "")
    if not value or Path(module_path).name != "libsofthsm2.so":
        return None
    try:
        seconds = float(value) / 1000
    except ValueError:
        log.warning("ignoring %s=%r: not a number of milliseconds", LATENCY_ENV, value)
        return None
    if not 0 < seconds <= 1:
        log.warning("ignoring %s=%r: give 0 to 1000 milliseconds", LATENCY_ENV, value)
        return None
    log.warning(
        "TEST HSM LATENCY ENABLED (%s=%s): every signature waits %.1f ms; never set this in "
        "production",
        LATENCY_ENV,
        value,
        seconds * 1000,
    )
    return lambda: time.sleep(seconds)
