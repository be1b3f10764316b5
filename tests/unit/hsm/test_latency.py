"""The test-only HSM latency (issue 7 §7): on only for SoftHSM and a sane number of
milliseconds, and it waits off the CPU."""

from __future__ import annotations

import time

import pytest

from hsm._faults import LATENCY_ENV, latency_for

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


def test_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LATENCY_ENV, raising=False)
    assert latency_for(SOFTHSM) is None


@pytest.mark.parametrize("value", ["abc", "0", "-1", "5000"])
def test_nonsense_is_ignored(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(LATENCY_ENV, value)
    assert latency_for(SOFTHSM) is None


def test_never_with_a_vendor_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LATENCY_ENV, "1")
    assert latency_for("/opt/vendor/lib/libcknfast.so") is None


def test_waits_off_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LATENCY_ENV, "20")
    hook = latency_for(SOFTHSM)
    assert hook is not None
    wall, cpu = time.monotonic(), time.process_time()
    for _ in range(5):
        hook()
    assert time.monotonic() - wall >= 0.1
    assert time.process_time() - cpu < 0.05
