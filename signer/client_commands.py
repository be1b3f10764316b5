"""``signer sign``, ``reissue``, ``verify`` and ``trust-list``: the commands that talk to a
server. Each checks its input, address and TLS files and opens its outputs before the first
request, so a usage or I/O fault is one ``ConfigError`` (exit 2) and signs nothing."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

from signer.client import ClientTls, SignTally
from signer.errors import ConfigError


def _client_tls(args: argparse.Namespace) -> ClientTls | None:
    from signer.client import ClientTls

    return ClientTls.from_options(args.ca, args.cert, args.key)


def run_sign(args: argparse.Namespace) -> int:
    from signer.client import sign_file

    return _through_server(args, sign_file)


def run_reissue(args: argparse.Namespace) -> int:
    from signer.client import reissue_file

    return _through_server(args, reissue_file)


def _through_server(args: argparse.Namespace, run: Callable[..., SignTally]) -> int:
    """``sign`` / ``reissue``: FILE (or stdin) in, JSON lines to --out (or stdout), QR codes to
    --qr-dir when asked; exit 1 when any item was rejected (in the output file as a whole when
    resuming). Every file is opened before the first request."""
    from signer.cli_files import make_directory, open_input, open_output
    from signer.client import QrFiles, check_dial, lines_to_send
    from signer.resume import NOTHING_ANSWERED, answered_lines

    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch}: give 1 or more items per request")
    if args.resume and args.out is None:
        raise ConfigError("--resume carries on from the --out file: give --out FILE")
    answered = answered_lines(args.out) if args.resume else NOTHING_ANSWERED
    progress = None if args.quiet else sys.stderr
    if answered.lines and progress is not None:
        print(
            f"resuming: {len(answered.lines)} line(s) already in {args.out} "
            f"({answered.rejected} rejected)",
            file=progress,
        )
    path = None if args.file == "-" else Path(args.file)
    if path is not None:  # a missing input is named before anything else happens
        open_input(path).close()
    tls = _client_tls(args)
    check_dial(args.server, tls)  # before --out is truncated
    total = lines_to_send(path, answered) if progress is not None else None
    with contextlib.ExitStack() as stack:
        out = (
            stack.enter_context(open_output(args.out, append=args.resume))
            if args.out
            else sys.stdout
        )
        qr = None
        if args.qr:
            qr = QrFiles(
                make_directory(args.qr_dir, "--qr-dir"), "png" in args.qr, "svg" in args.qr
            )
        tally = run(
            path,
            args.server,
            out,
            args.batch,
            args.alg,
            progress,
            qr,
            tls=tls,
            answered=answered,
            total=total,
        )
    return 1 if tally.rejected or answered.rejected else 0


def run_verify(args: argparse.Namespace) -> int:
    import datetime as dt

    from signer.cli_files import open_input, open_output
    from signer.verify_cli import build_trust, parse_instant, verify_file

    at = parse_instant(args.at) if args.at else dt.datetime.now(dt.UTC)
    trust = build_trust(args.trust_dir, args.server, tls=_client_tls(args))
    path = None if args.file == "-" else Path(args.file)
    if path is not None:  # a missing input is named before the output is touched
        open_input(path).close()
    if args.out is not None:
        with open_output(args.out) as out:
            failed = verify_file(path, trust, at, out, schema=args.schema)
    else:
        failed = verify_file(path, trust, at, sys.stdout, schema=args.schema)
    print(f"{failed} line(s) failed verification", file=sys.stderr)
    return 1 if failed else 0


def run_trust_list(args: argparse.Namespace) -> int:
    import datetime as dt

    from signer.cli_files import make_directory
    from signer.client import check_dial, fetch_trust_list
    from signer.trust_files import write_trust_list

    tls = _client_tls(args)
    check_dial(args.server, tls)
    make_directory(args.out, "--out")  # before the server is asked
    entries = fetch_trust_list(args.server, tls=tls)
    paths = write_trust_list(entries, args.out)
    states = {1: "pending", 2: "active", 3: "retired"}
    algs = {1: "ES256", 2: "PS256"}
    print(f"{'label':24} {'kid (hex)':16} {'alg':5} {'state':8} {'not after':20} file")
    for entry, path in zip(entries, paths, strict=True):
        not_after = dt.datetime.fromtimestamp(entry.not_after, dt.UTC).strftime("%Y-%m-%d %H:%M")
        print(
            f"{entry.label:24} {entry.kid.hex():16} {algs.get(entry.alg, '?'):5} "
            f"{states.get(entry.state, '?'):8} {not_after:20} {path}"
        )
    return 0
