"""The appliance-wide login backoff (issue 9 §2), on a fake clock."""

from __future__ import annotations

import pytest

from signer.front.login_gate import LoginGate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_windows_double_up_to_the_cap_and_a_success_resets_them() -> None:
    clock = Clock()
    gate = LoginGate(clock)
    assert gate.trouble and gate.delay() == 0  # the first probe goes at once
    delays = [gate.failed("NO_SUCH_TOKEN") for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert gate.delay() == 30.0
    clock.now += 10
    assert gate.delay() == pytest.approx(20.0)
    gate.succeeded()
    assert not gate.trouble and gate.failures == 0
    assert gate.failed("CKR_DEVICE_ERROR") == 0.5


def test_a_refused_pin_backs_off_longer() -> None:
    gate = LoginGate(Clock())
    delays = [gate.failed("CKR_PIN_INCORRECT") for _ in range(11)]
    assert delays[-1] == 300.0 and max(delays) == 300.0


def test_a_lost_hsm_waits_for_the_first_window() -> None:
    clock = Clock()
    gate = LoginGate(clock)
    gate.succeeded()
    gate.lost()
    assert gate.trouble and gate.delay() == 0.5
    gate.lost()  # a second worker losing it changes nothing
    assert gate.delay() == 0.5
