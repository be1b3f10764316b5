"""``signer audit``: read the issuance ledger without the server or the HSM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from signer.config import load_config
from signer.ledger.sqlite import chains, open_for_reading, read_records
from signer.ledger.verify import verify_chain


def add_audit_parser(commands: Any) -> None:
    audit = commands.add_parser(
        "audit",
        help="check the issuance ledger (every signature the appliance handed out)",
        description="The issuance ledger: one record per signed item, hash-chained per "
        "appliance ([ledger] path and chain).",
    )
    verbs = audit.add_subparsers(dest="audit_command", required=True, metavar="VERB")
    verify = verbs.add_parser(
        "verify",
        help="check every chain of the ledger and name the first bad record",
        description="Walk every chain of the ledger: numbering from 1 without gaps, each "
        "record's link to the one before and its hash. Prints one line per chain and the "
        "first bad sequence number of a broken one. Exit status 0 when every chain holds, 1 "
        "when one is broken, 2 when the ledger is missing, empty or unreadable.",
    )
    verify.add_argument("--config", type=Path, help="TOML config (default: embedded dev)")
    verify.add_argument("--ledger", type=Path, help="the SQLite file; overrides the config")
    verify.add_argument("--chain", help="check only this chain")


def run(args: argparse.Namespace) -> int:
    if args.audit_command == "verify":
        return _verify(args)
    return 2


def _verify(args: argparse.Namespace) -> int:
    path = args.ledger if args.ledger is not None else load_config(args.config).ledger_path
    db = open_for_reading(path)
    try:
        names = [args.chain] if args.chain else chains(db)
        if not names:
            print(f"error: the ledger {path} holds no records: nothing to verify", file=sys.stderr)
            return 2
        broken = 0
        for name in names:
            report = verify_chain(name, read_records(db, name))
            if report.records == 0:
                print(f"chain {name!r}: no records", file=sys.stderr)
                broken += 1
            elif report.finding is None:
                print(f"chain {name!r}: {report.records} record(s), intact")
            else:
                broken += 1
                print(
                    f"chain {name!r}: BROKEN at sequence number {report.finding.seq}: "
                    f"{report.finding.problem}"
                )
        return 1 if broken else 0
    finally:
        db.close()
