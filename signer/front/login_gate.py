"""One HSM login attempt per backoff window for the whole appliance (issue 9 §2).

A real HSM counts failed logins and locks the user PIN after a few: N workers each retrying with
their own backoff would spend N attempts per window. While the HSM is in trouble (nothing
logged in yet, a login failed, or a worker lost the HSM), the pool starts one worker at a time,
the probe, at the earliest when the window opens; only when it has logged in do the others
start. Windows double from 0.5 s to 30 s (300 s after the token refused the PIN, which does not
heal without an operator) and start again at 0.5 s after a success.
"""

from __future__ import annotations

import time
from collections.abc import Callable

BASE_SECONDS = 0.5
MAX_SECONDS = 30.0
MAX_PIN_SECONDS = 300.0
#: Failure codes after which only the operator helps (a wrong PIN file, a locked PIN).
PIN_CODES = frozenset({"CKR_PIN_INCORRECT", "CKR_PIN_LEN_RANGE", "CKR_PIN_LOCKED"})


class LoginGate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.failures = 0
        self.trouble = True  # nothing has logged in yet: the first worker is a probe
        self._next_at = 0.0

    def delay(self) -> float:
        """Seconds until the next login attempt may start."""
        return max(0.0, self._next_at - self._clock())

    def succeeded(self) -> None:
        self.failures = 0
        self.trouble = False

    def failed(self, code: str) -> float:
        """A login attempt failed with ``code``; the seconds until the next window."""
        self.failures += 1
        cap = MAX_PIN_SECONDS if code in PIN_CODES else MAX_SECONDS
        delay = min(cap, BASE_SECONDS * 2.0 ** (self.failures - 1))
        self._next_at = self._clock() + delay
        self.trouble = True
        return delay

    def lost(self) -> None:
        """A logged-in worker lost the HSM: the next login waits for the first window."""
        if not self.trouble:
            self.trouble = True
            self._next_at = max(self._next_at, self._clock() + BASE_SECONDS)
