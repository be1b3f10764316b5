"""The soak's load generator (``signer bench --soak-minutes``, ``_soak.py``): a process of its
own that measures capacity closed-loop, then sends batches open-loop at a fixed rate and reports
each window (issue 9 §11). Latency runs from each batch's scheduled send, so a server that falls
behind shows in the percentiles instead of slowing the generator (no coordinated omission)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import grpc

from signer.api.v1 import signer_pb2 as pb
from signer.bench._load import CHANNEL_OPTIONS, SIGN_BATCH, open_channel, percentiles


class _Tally:
    """What the generator saw in one window (and in the whole run)."""

    def __init__(self) -> None:
        self.calls = 0
        self.signed = 0
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []

    def add(self, other: _Tally) -> None:
        self.calls += other.calls
        self.signed += other.signed
        self.errors.update(other.errors)
        self.latencies += other.latencies

    def report(self, seconds: float) -> dict[str, Any]:
        return {
            "seconds": round(seconds, 1),
            "calls": self.calls,
            "signed": self.signed,
            "certs_per_s": round(self.signed / seconds) if seconds > 0 else 0,
            "errors": dict(self.errors),
            "latency_ms": percentiles(self.latencies),
        }


async def _capacity(calls: list[Any], blobs: list[bytes], seconds: float) -> float:
    """Certificates per second with every lane sending its next batch as soon as one returns."""
    signed = 0
    end = time.perf_counter() + seconds

    async def lane(call: Any, offset: int) -> None:
        nonlocal signed
        n = offset
        while time.perf_counter() < end:
            response = pb.SignBatchResponse.FromString(await call(blobs[n % len(blobs)]))
            signed += sum(1 for r in response.results if r.HasField("signed"))
            n += len(calls)

    started = time.perf_counter()
    await asyncio.gather(*(lane(call, i) for i, call in enumerate(calls)))
    return signed / (time.perf_counter() - started)


class _Paced:
    """Open-loop batches at ``rate`` per second for the soak's minutes, reported per window."""

    def __init__(
        self, calls: list[Any], blobs: list[bytes], trust: Any, settings: dict[str, Any], out: Any
    ) -> None:
        self._calls, self._blobs, self._trust = calls, blobs, trust
        self._ids = [[item.id for item in pb.SignBatchRequest.FromString(b).items] for b in blobs]
        self._settings, self._out = settings, out
        self._window, self._total = _Tally(), _Tally()
        self._sample_due = True
        self._limit = asyncio.Semaphore(settings["max_in_flight"])

    async def _one(self, number: int, scheduled: float) -> None:
        from signer.hcert.verify import verify_hc1

        blob = number % len(self._blobs)
        try:
            raw = await self._calls[number % len(self._calls)](self._blobs[blob], timeout=60)
        except grpc.aio.AioRpcError as e:
            self._window.errors[e.code().name] += 1
            return
        finally:
            self._limit.release()
            self._window.calls += 1
        window = self._window
        window.latencies.append(time.perf_counter() - scheduled)
        response = pb.SignBatchResponse.FromString(raw)
        if [r.id for r in response.results] != self._ids[blob]:
            window.errors["ids"] += 1
        ok = [r for r in response.results if r.HasField("signed")]
        window.signed += len(ok)
        if len(ok) != len(response.results):
            window.errors["rejected"] += len(response.results) - len(ok)
        if self._sample_due and ok:
            self._sample_due = False
            if not verify_hc1(ok[0].signed.hc1, self._trust).ok:
                window.errors["verify"] += 1

    def _close_window(self, started: float, window_started: float) -> None:
        now = time.perf_counter()
        self._out.put(
            ("window", round(now - started, 1), self._window.report(now - window_started))
        )
        self._total.add(self._window)
        self._window, self._sample_due = _Tally(), True

    async def run(self, rate: float) -> tuple[_Tally, float]:
        """Send until the minutes are over, then wait for the calls in flight; the total and
        the seconds it took."""
        tasks: set[asyncio.Task[None]] = set()
        started = window_started = time.perf_counter()
        step = self._settings["window"]
        end, next_report = started + self._settings["minutes"] * 60, started + step
        number = 0
        while True:
            scheduled = started + number / rate
            now = time.perf_counter()
            if now >= next_report or scheduled >= end:
                self._close_window(started, window_started)
                window_started, next_report = now, next_report + step
                if scheduled >= end:
                    break
            if scheduled > now:
                await asyncio.sleep(min(scheduled, next_report) - now)
                continue
            await self._limit.acquire()  # bounded: falling behind shows in the latencies
            task = asyncio.ensure_future(self._one(number, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            number += 1
        if tasks:
            await asyncio.gather(*tasks)
        self._total.add(self._window)  # calls that ended after the last window
        return self._total, time.perf_counter() - started


async def _trust(channel: Any) -> Any:
    """The appliance's DSCs as a trust store, for the sampled verifications."""
    from cryptography import x509

    from signer.hcert.verify import TrustedDsc, TrustStore

    call = channel.unary_unary("/hcert.signer.v1.Signer/GetTrustList")
    raw = await call(pb.GetTrustListRequest().SerializeToString())
    return TrustStore(
        TrustedDsc.from_certificate(x509.load_der_x509_certificate(e.certificate_der))
        for e in pb.GetTrustListResponse.FromString(raw).entries
    )


async def _soak(
    address: str, blobs: list[bytes], settings: dict[str, Any], out: Any
) -> dict[str, Any]:
    channels = [
        open_channel(address, None, CHANNEL_OPTIONS) for _ in range(settings["concurrency"])
    ]
    calls = [ch.unary_unary(SIGN_BATCH) for ch in channels]
    for ch in channels:
        await ch.channel_ready()
    trust = await _trust(channels[0])
    capacity = await _capacity(calls, blobs, settings["capacity_seconds"])
    rate = settings["load"] * capacity / settings["batch"]  # batches per second
    out.put(("capacity", round(capacity), round(rate, 2)))
    total, seconds = await _Paced(calls, blobs, trust, settings, out).run(rate)
    for ch in channels:
        await ch.close()
    return {
        "capacity_certs_per_s": round(capacity),
        "target_batches_per_s": round(rate, 2),
        **total.report(seconds),
    }


def run_soak_load(address: str, blobs: list[bytes], settings: dict[str, Any], out: Any) -> None:
    """Process entry point of the generator; puts ``capacity``, ``window`` and ``done``."""
    out.put(("done", asyncio.run(_soak(address, blobs, settings, out))))
