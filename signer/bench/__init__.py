"""``signer bench``: the raw HSM sign rate and end-to-end HC1 issuance, in one run, one machine.

(a) raw: N processes (N = HSM sessions), each with its own login, sign SHA-256 digests with the
    same token key the server uses, for ``--seconds``;
(b) end to end: a real ``signer serve`` with N sessions, and a load generator process on the same
    machine sending pre-built SignBatch requests of realistic Vietnamese payloads.
Prints certs/s, p50/p99 batch latency, server RSS and the ratio (b)/(a). A benchmark, not a test:
the figures go into docs/performance.md with the machine they were measured on.

With ``--soak-minutes`` it is a soak instead (issue 9 §11, ``_soak.py``, docs/soak.md).
"""

from __future__ import annotations

import argparse
import sys

from signer.bench._run import run_bench
from signer.bench._soak import run_soak

__all__ = ["run", "run_bench", "run_soak"]


def run(args: argparse.Namespace) -> int:
    """``signer bench``: the benchmark, or with ``--soak-minutes`` the soak."""
    problem = _usage_problem(args)
    if problem is not None:
        print(f"signer bench: {problem}", file=sys.stderr)
        return 2
    if args.soak_minutes is not None:
        args.batch = args.batch or 100
        return run_soak(args)
    args.batch = args.batch or 1000
    return run_bench(args)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """Why these options cannot run together, for both modes; None when they can."""
    if args.soak_minutes is not None:
        # The soak's load processes connect in plaintext; a TLS server would refuse them.
        if args.tls or args.fairness:
            return "--tls and --fairness are for the benchmark, not --soak-minutes"
        return None
    if args.fairness < 0:
        return "--fairness must be 0 (skip) or a number of calls"
    if args.fairness and not args.tls:
        return "--fairness needs --tls: its two clients are told apart by their certificates"
    if args.tls and (args.unary_calls or args.stream_items):
        return (
            "--tls measures phase (b) only: leave out --unary-calls and --stream-items (their "
            "baselines are plaintext)"
        )
    if min(args.runs, args.concurrency, 1 if args.connections is None else args.connections) < 1:
        return "--runs, --concurrency and --connections must be at least 1"
    return None
