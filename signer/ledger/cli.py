"""``signer audit``: read the issuance ledger and check it against the HSM's audit key."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from hsm import HsmError
from signer.config import load_config
from signer.errors import BackendError, ConfigError
from signer.hcert.revocation import truncated_sha256
from signer.ledger.checkpoints import HEAD_APPLICATION, Head, unpack_head
from signer.ledger.records import decode_event
from signer.ledger.register_cli import add_register_parser, run_register
from signer.ledger.revocation_cli import add_revocation_parsers, run_export, run_revoke
from signer.ledger.store import LedgerReader, check_target, open_reader
from signer.ledger.verify import verify_anchors, verify_chain
from signer.token import open_existing_token

LEDGER_HELP = "the ledger: a SQLite file or a postgresql:// URL; overrides the config"


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
        "record's link to the one before and its hash; then its checkpoints, each signed by "
        "the audit key in the HSM, and the head the HSM keeps for the chain (which finds a "
        "rewritten stretch, a cut tail and an older copy). The audit key and heads are read "
        "from the token of --config (PIN from env or file, as for serve); with --audit-key "
        "the check runs without the HSM, against that pinned public key, and a tail cut after "
        "the last stored checkpoint goes unseen. Prints one line per chain and the first bad "
        "sequence number of a broken one. Exit status 0 when every chain holds, 1 when one is "
        "broken, 2 when the ledger is missing, empty or unreadable, or the HSM cannot be read.",
    )
    verify.add_argument("--config", type=Path, help="TOML config (default: embedded dev)")
    verify.add_argument("--ledger", help=LEDGER_HELP)
    verify.add_argument("--chain", help="check only this chain")
    verify.add_argument(
        "--audit-key",
        type=Path,
        metavar="PEM",
        help="the audit public key (from 'signer audit key'): check without the HSM",
    )
    verify.add_argument(
        "--chain-only",
        action="store_true",
        help="check the hash chain alone, without checkpoints or the HSM's head: this cannot "
        "find a chain recomputed by someone with write access, nor a cut tail",
    )

    key = verbs.add_parser(
        "key",
        help="print the ledger's audit public key (PEM) from the HSM, for --audit-key",
        description="Print the public half of the audit key that signs ledger checkpoints "
        "(its private half never leaves the HSM), so an auditor can check a copy of the "
        "ledger without the HSM. Exit status 2 when the token has no audit key yet (the "
        "appliance makes one at its first start).",
    )
    key.add_argument("--config", type=Path, help="TOML config (default: embedded dev)")

    show = verbs.add_parser(
        "show",
        help="print records as JSON lines: who signed which certificate, under which kid",
        description="Print ledger records as JSON lines (hashes and kids in base64, as the DCC "
        'revocation lists write them), oldest first. Answers "who issued certificate X" '
        "with --uci or --signature-hash. Reads the file only; nothing is checked (use verify).",
    )
    show.add_argument("--config", type=Path, help="TOML config (default: embedded dev)")
    show.add_argument("--ledger", help=LEDGER_HELP)
    show.add_argument("--chain", help="only this chain")
    show.add_argument("--uci", metavar="UVCI", help="only the certificate with this UVCI")
    show.add_argument(
        "--signature-hash", metavar="BASE64", help="only the record with this SIGNATURE hash"
    )

    add_revocation_parsers(verbs)
    add_register_parser(verbs)


def run(args: argparse.Namespace) -> int:
    if args.audit_command == "verify":
        return verify(args)
    if args.audit_command == "show":
        return _show(args)
    if args.audit_command == "key":
        return _key(args)
    if args.audit_command == "revoke":
        return run_revoke(args)
    if args.audit_command == "revocations":
        return run_export(args)
    if args.audit_command == "register":
        return run_register(args)
    return 2


class _Anchors(NamedTuple):
    """What the chains are checked against beyond their own hashes."""

    audit_key: bytes  # SPKI DER
    heads: dict[str, Head]  # chain → the head the token keeps (empty without the HSM)


def _anchors(args: argparse.Namespace) -> _Anchors | None:
    """The audit key and the token's heads; None with --chain-only or when the token has no
    audit key yet."""
    if args.chain_only:
        return None
    if args.audit_key is not None:
        try:
            public = load_pem_public_key(args.audit_key.read_bytes())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--audit-key {args.audit_key}: not a PEM public key ({e})") from e
        return _Anchors(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo), {})
    token = open_existing_token(load_config(args.config))
    try:
        found = token.audit_key(create=False)
        heads = {
            data.label: unpack_head(data.label, data.value)
            for data in token.data_objects(HEAD_APPLICATION)
        }
    except HsmError as e:
        raise BackendError(f"cannot read the audit key from the HSM: {e}") from e
    finally:
        token.close()
    return None if found is None else _Anchors(found[1], heads)


def _key(args: argparse.Namespace) -> int:
    token = open_existing_token(load_config(args.config))
    try:
        found = token.audit_key(create=False)
    except HsmError as e:
        raise BackendError(f"cannot read the audit key from the HSM: {e}") from e
    finally:
        token.close()
    if found is None:
        print(
            "error: the token has no ledger audit key yet: start the appliance once",
            file=sys.stderr,
        )
        return 2
    public = load_der_public_key(found[1])
    sys.stdout.write(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode())
    return 0


def _show(args: argparse.Namespace) -> int:
    uci = truncated_sha256(args.uci.encode()) if args.uci else None
    try:
        wanted = (
            base64.b64decode(args.signature_hash, validate=True) if args.signature_hash else None
        )
    except binascii.Error:
        print("error: --signature-hash is not base64", file=sys.stderr)
        return 2
    ledger = _open(args)
    try:
        for name in [args.chain] if args.chain else ledger.chains():
            for record in ledger.records(name):
                if record.is_event:  # a key event (signer keys audit): no certificate
                    if wanted is None and uci is None:
                        event = decode_event(record.body)
                        line = {"chain": name, "seq": record.seq, "time_us": event.time_us}
                        print(json.dumps({**line, "event": event.fields}, ensure_ascii=False))
                    continue
                if wanted is not None and record.signature != wanted:
                    continue
                entry = record.entry
                if uci is not None and entry.uci != uci:
                    continue
                line = {"chain": record.chain, "seq": record.seq, **entry._asdict()}
                print(json.dumps({k: _text(v) for k, v in line.items()}))
    finally:
        ledger.close()
    return 0


def _open(args: argparse.Namespace) -> LedgerReader:
    """The ledger of ``--ledger``, else of the config."""
    if args.ledger is not None:
        return open_reader(check_target(args.ledger, "--ledger"))
    return open_reader(load_config(args.config).ledger_target)


def _text(value: object) -> object:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else value


def verify(args: argparse.Namespace) -> int:
    """``signer audit verify`` (also ``signer keys audit --verify`` for the key-events chain)."""
    ledger = _open(args)
    try:
        names = [args.chain] if args.chain else ledger.chains()
        if not names:
            print(
                f"error: the ledger {ledger.where} holds no records: nothing to verify",
                file=sys.stderr,
            )
            return 2
        anchors = _anchors(args)
        if anchors is None and not args.chain_only:
            print(
                "error: the token has no ledger audit key yet (the appliance makes one at its "
                "first start): pass --chain-only to check the hash chain alone",
                file=sys.stderr,
            )
            return 2
        broken = sum(not _verify_one(ledger, name, anchors) for name in names)
        return 1 if broken else 0
    finally:
        ledger.close()


def _verify_one(ledger: LedgerReader, chain: str, anchors: _Anchors | None) -> bool:
    """Check one chain and print one line about it; whether it holds."""
    stored = ledger.checkpoints(chain)
    head = anchors.heads.get(chain) if anchors is not None else None
    wanted = {c.head.seq for c in stored} | ({head.seq} if head is not None else set())
    report = verify_chain(chain, ledger.records(chain), wanted)
    finding = report.finding
    if report.records == 0 and head is None:
        print(f"chain {chain!r}: no records", file=sys.stderr)
        return False
    if finding is None and anchors is not None:
        finding = verify_anchors(report, stored, anchors.audit_key, head)
    if finding is not None:
        print(f"chain {chain!r}: BROKEN at sequence number {finding.seq}: {finding.problem}")
        return False
    if anchors is None:
        print(f"chain {chain!r}: {report.records} record(s), hash chain intact (not anchored)")
        return True
    last = max(wanted, default=0)
    where = "and the HSM's head" if head is not None else "(no head in the HSM: pinned key)"
    print(
        f"chain {chain!r}: {report.records} record(s), intact; {len(stored)} checkpoint(s) "
        f"{where} match, the last at record {last}"
    )
    return True
