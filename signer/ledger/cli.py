"""``signer audit``: read the issuance ledger without the server or the HSM."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from pathlib import Path
from typing import Any

from signer.config import load_config
from signer.hcert.revocation import truncated_sha256
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

    show = verbs.add_parser(
        "show",
        help="print records as JSON lines: who signed which certificate, under which kid",
        description="Print ledger records as JSON lines (hashes and kids in base64, as the DCC "
        'revocation lists write them), oldest first. Answers "who issued certificate X" '
        "with --uci or --signature-hash. Reads the file only; nothing is checked (use verify).",
    )
    show.add_argument("--config", type=Path, help="TOML config (default: embedded dev)")
    show.add_argument("--ledger", type=Path, help="the SQLite file; overrides the config")
    show.add_argument("--chain", help="only this chain")
    show.add_argument("--uci", metavar="UVCI", help="only the certificate with this UVCI")
    show.add_argument(
        "--signature-hash", metavar="BASE64", help="only the record with this SIGNATURE hash"
    )


def run(args: argparse.Namespace) -> int:
    if args.audit_command == "verify":
        return _verify(args)
    if args.audit_command == "show":
        return _show(args)
    return 2


def _show(args: argparse.Namespace) -> int:
    path = args.ledger if args.ledger is not None else load_config(args.config).ledger_path
    uci = truncated_sha256(args.uci.encode()) if args.uci else None
    try:
        wanted = (
            base64.b64decode(args.signature_hash, validate=True) if args.signature_hash else None
        )
    except binascii.Error:
        print("error: --signature-hash is not base64", file=sys.stderr)
        return 2
    db = open_for_reading(path)
    try:
        for name in [args.chain] if args.chain else chains(db):
            for record in read_records(db, name):
                if wanted is not None and record.signature != wanted:
                    continue
                entry = record.entry
                if uci is not None and entry.uci != uci:
                    continue
                line = {"chain": record.chain, "seq": record.seq, **entry._asdict()}
                print(json.dumps({k: _text(v) for k, v in line.items()}))
    finally:
        db.close()
    return 0


def _text(value: object) -> object:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


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
