"""QR codes for the signed items of a response, rendered off the HSM threads (issue 9 §8).

A worker's one thread is its HSM thread; a QR code there (tens of milliseconds each) would hold
the HSM session ~400 signatures long per item. So workers only sign, and the front adds the QR
codes to a chunk's response afterwards, in a process pool of its own (not a thread: segno is
pure Python and would hold the front's event loop through the GIL). The pool starts on the
first request that asks for QR codes; jobs are small, so a caller that goes away leaves at most
one job per pool process running, and its queued jobs are dropped.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from signer.api.v1 import signer_pb2 as pb
from signer.front.checks import DEFAULT_QR_SCALE
from signer.hcert import qr

__all__ = ["JOB_ITEMS", "QrRenderer"]

JOB_ITEMS = 8  # QR codes per job: ~0.3 s of one process


class QrRenderer:
    def __init__(self, processes: int) -> None:
        self._processes = max(1, processes)
        self._executor: ProcessPoolExecutor | None = None

    async def add(self, responses: list[bytes], output: Any) -> list[bytes]:
        """``responses`` (serialised SignBatchResponse parts) with the QR codes ``output``
        (OutputOptions) asks for filled into every signed result."""
        if not (output.qr_png or output.qr_svg):
            return responses
        scale = output.qr_scale or DEFAULT_QR_SCALE
        parsed = [pb.SignBatchResponse.FromString(r) for r in responses]
        signed = [r.signed for part in parsed for r in part.results if r.HasField("signed")]
        if not signed:
            return responses
        loop = asyncio.get_running_loop()
        executor = self._pool()
        jobs = [
            loop.run_in_executor(
                executor,
                qr.render_many,
                [s.hc1 for s in signed[start : start + JOB_ITEMS]],
                output.qr_png,
                output.qr_svg,
                scale,
            )
            for start in range(0, len(signed), JOB_ITEMS)
        ]
        try:
            rendered = [code for job in await asyncio.gather(*jobs) for code in job]
        finally:
            for job in jobs:
                job.cancel()  # a job not started yet never runs for a caller that has gone
        for message, (png, svg) in zip(signed, rendered, strict=True):
            if png is not None:
                message.qr_png = png
            if svg is not None:
                message.qr_svg = svg
        return [part.SerializeToString() for part in parsed]

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the front runs gRPC's threads, which a forked child must not have
            self._executor = ProcessPoolExecutor(
                self._processes, mp_context=multiprocessing.get_context("spawn")
            )
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
