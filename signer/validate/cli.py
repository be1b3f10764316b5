"""``signer validate``: open the files, run :func:`validate_file`, print the summary."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import IO

from signer.cli_files import open_input, open_output
from signer.errors import ConfigError
from signer.jsonl import stdin_text


def add_validate_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register ``validate`` under ``signer``."""
    validate = commands.add_parser(
        "validate",
        help="check a JSONL file of DCC payloads offline, exactly as signing would",
        description="Checks each line (the 'signer sign' input format) offline, without server, "
        "HSM or PIN, with the signing path's own checks: [server] max_payload_bytes (too_large), "
        "JSON (json), the [validation] policy of --config (every code of docs/errors.md) and "
        "UVCIs repeated anywhere in the file (duplicate_uvci). Writes one JSON line per input "
        "line, in order: {line, id, valid, warnings} or {line, id, errors}; a summary by code "
        "and path goes to stderr. Exit status 0 when all lines are valid, 1 when any is "
        "rejected, 2 on usage or I/O errors.",
    )
    validate.add_argument("file", help="JSONL input, or - for stdin")
    validate.add_argument(
        "--config",
        type=Path,
        help="TOML config whose [validation] and [server] apply (default: embedded dev defaults)",
    )
    validate.add_argument("--out", type=Path, help="write results here instead of stdout")
    validate.add_argument("--report", type=Path, metavar="F.html", help="also write an HTML report")
    validate.add_argument(
        "--csv", type=Path, metavar="F.csv", help="also write line,id,code,path per error"
    )
    validate.add_argument(
        "--processes", type=int, help="worker processes (default: one per usable core)"
    )
    validate.add_argument("--quiet", action="store_true", help="no progress output")


def _open(path: Path, option: str, mode: str) -> IO[str]:
    if mode == "r":
        return open_input(path, option)  # a line that is not UTF-8 gets a utf8 error; file goes on
    return open_output(path, option, newline="" if option == "--csv" else None)


def run_validate(args: argparse.Namespace) -> int:
    """Exit status: 0 all valid, 1 any rejected; ConfigError (→ 2) for usage and I/O faults."""
    # Imported here: the checks load the signing service, which `signer --help` does not need.
    from signer.config import load_config
    from signer.validate._report import write_html
    from signer.validate._run import usable_cores, validate_file

    processes = args.processes if args.processes is not None else usable_cores()
    if processes < 1:
        raise ConfigError(f"--processes {processes}: give 1 or more (default: usable cores)")
    config = load_config(args.config)
    with contextlib.ExitStack() as stack:
        if args.file == "-":
            source, total = stdin_text(), None
        else:
            path = Path(args.file)
            source = stack.enter_context(_open(path, "FILE", "r"))
            total = os.fstat(source.fileno()).st_size
        out = stack.enter_context(_open(args.out, "--out", "w")) if args.out else sys.stdout
        csv_out = stack.enter_context(_open(args.csv, "--csv", "w")) if args.csv else None
        try:
            summary = validate_file(
                source,
                config,
                out,
                processes=processes,
                csv_out=csv_out,
                progress=None if args.quiet else sys.stderr,
                total_bytes=total,
            )
        except OSError as e:
            raise ConfigError(f"I/O error while validating {args.file}: {e}") from e
    summary.write(sys.stderr)
    if args.report:
        with _open(args.report, "--report", "w") as report:
            write_html(summary, args.file, report)
    return 1 if summary.rejected else 0
