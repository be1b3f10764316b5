"""Phase (a): raw python-pkcs11 signatures per second, one login per process."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from typing import Any

from signer.config import Config
from signer.domain import Alg, CertType


def _raw_worker(config: Config, alg: Alg, seconds: float, barrier: Barrier, results: Any) -> None:
    from signer.keys.csca import load_cscas
    from signer.keys.registry import KeyRegistry
    from signer.keys.roster import approval_policy
    from signer.token import open_token

    token = open_token(config)
    registry = KeyRegistry(token, approval_policy(config, token), load_cscas(config))
    now = time.time()
    registry.refresh(now)
    key = registry.select(CertType.VACCINATION, alg, int(now), int(now) + 86400)
    sign = key.sign_digest
    digests = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1024)]
    sign(digests[0])  # warm-up
    barrier.wait()
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for digest in digests[:64]:
            sign(digest)
        count += 64
    results.put(count)
    token.close()


def raw_sign_rate(config: Config, alg: Alg, processes: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_raw_worker, args=(config, alg, seconds, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=120)
    started = time.perf_counter()
    total = sum(int(results.get(timeout=seconds + 120)) for _ in workers)
    elapsed = max(seconds, time.perf_counter() - started)
    for worker in workers:
        worker.join()
    return total / elapsed
