"""``signer keys …``: security officers manage DSC keys straight on the HSM (issue 4, ADR 0005).

The CLI logs in to the token with the officer's PIN (``[hsm] pin_env`` / ``pin_file``) — not
through the appliance's gRPC port, which serves issuance systems. It is single-threaded, so
PKCS#11 is only ever used from one thread. Errors are ``SignerError``; ``signer.cli.main``
catches them once.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import getpass
import json
import sys
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hsm import HsmToken
from signer.config import Config, load_config
from signer.domain import Alg, CertType
from signer.errors import RequestError, SignerError
from signer.keys.csca import load_cscas
from signer.keys.lifecycle import KeyManager, KeyRow, Outcome
from signer.keys.officers import OfficerKey, Roster
from signer.keys.roster import approval_policy
from signer.ledger.events import KEY_EVENTS_CHAIN, KeyEventLog, read_key_events


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.keys_command == "audit":
        return _audit(config, args)
    if args.keys_command == "roster":
        from signer.keys.roster_cli import run_roster

        return run_roster(config, args)
    token = open_token(config)
    try:
        policy = approval_policy(config, token)
        events = KeyEventLog(config.ledger_target, token)
        _import_trail(config, events)
        officer = _officer(args, policy.roster, events)
        manager = KeyManager(
            token,
            policy,
            events,
            country=config.issuer.country,
            cscas=load_cscas(config),
            proposal_seconds=config.officers.proposal_hours * 3600,
            actor=officer.name if officer else f"os:{getpass.getuser()}",
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
        return _dispatch(manager, officer, args)
    finally:
        token.close()


def _import_trail(config: Config, events: KeyEventLog) -> None:
    """The JSON-lines trail of before the ledger, imported once (``signer.ledger.events``)."""
    if not (config.audit.path or config.dev.bootstrap):
        return
    path = config.audit_path
    count = events.import_trail(path)
    if count:
        print(
            f"imported the {count} line(s) of the key audit trail {path} into the ledger's "
            f"key-events chain; the file is now {path.name}.imported",
            file=sys.stderr,
        )


def _officer(args: argparse.Namespace, roster: Roster, trail: KeyEventLog) -> OfficerKey | None:
    """The officer named by --officer-key; a refused key is audited too."""
    path: Path | None = getattr(args, "officer_key", None)
    if path is None:
        return None
    try:
        return OfficerKey.load(path, roster)
    except SignerError as e:
        trail.append(
            op=args.keys_command,
            officers=[f"unknown:{path}"],
            label=str(getattr(args, "label", None) or getattr(args, "proposal", "")),
            kid=None,
            params={},
            outcome="refused",
            error=str(e),
        )
        raise


def open_token(config: Config) -> HsmToken:
    from signer.token import open_existing_token

    return open_existing_token(config)


def _dispatch(manager: KeyManager, officer: OfficerKey | None, args: argparse.Namespace) -> int:
    command = args.keys_command
    if command == "generate":
        record = manager.generate(args.label, Alg(args.alg), _types(args.types))
        _say(args, {"label": record.label, "key_id": record.key_id.hex(), "state": "pending"})
        return 0
    if command == "csr":
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        der = manager.csr(args.label, args.subject)
        pem = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM).decode()
        if args.out:
            args.out.write_text(pem)
            print(f"wrote {args.out}", file=sys.stderr)
        else:
            sys.stdout.write(pem)
        return 0
    if command == "list":
        rows = _with_signatures(manager.rows(), args.metrics)
        if args.json:
            print(json.dumps([asdict(r) for r in rows], indent=2))
        else:
            _table(rows)
        return 0
    if command == "proposals":
        found = manager.proposals()
        if args.json:
            print(json.dumps([p.content() for p in found], indent=2))
        for p in [] if args.json else found:
            print(
                f"{p.id}  {p.op:9} {p.label:20} by {p.proposed_by:16} expires "
                f"{_time(p.expires_at)}  {json.dumps(_short(p.params))}"
            )
        return 0
    assert officer is not None  # argparse requires --officer-key for the commands below
    if command == "approve":
        return _report(args, manager.approve(args.proposal, officer))
    params: dict[str, Any] = {}
    if command == "import-cert":
        params["certificate"] = _b64_file(args.certificate)
        if args.csca:
            params["csca"] = _b64_file(args.csca)
    elif command in ("activate", "retire") and args.at:
        from signer.verify_cli import parse_instant

        params["at"] = int(parse_instant(args.at).timestamp())
    elif command == "destroy":
        if args.force and not args.reason.strip():
            raise RequestError("--force needs --reason TEXT: it goes into the audit trail")
        params.update(force=bool(args.force), reason=args.reason.strip() or None)
    op = "import" if command == "import-cert" else command
    return _report(args, manager.propose(op, args.label, params, officer))


def _report(args: argparse.Namespace, outcome: Outcome) -> int:
    p = outcome.proposal
    for warning in outcome.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    result = {
        "proposal": p.id,
        "op": p.op,
        "label": p.label,
        "approved_by": list(outcome.approvers),
        "executed": outcome.executed,
    }
    if args.json:
        print(json.dumps(result))
    elif outcome.executed:
        print(f"{p.op} {p.label}: executed (approved by {', '.join(outcome.approvers)})")
    else:
        print(
            f"{p.op} {p.label}: proposal {p.id} signed by {', '.join(outcome.approvers)}; "
            f"another officer runs:\n  signer keys approve {p.id} --officer-key THEIR_KEY.pem"
        )
    return 0


def _audit(config: Config, args: argparse.Namespace) -> int:
    """The key-events chain of the ledger: printed, or checked like ``signer audit verify``."""
    from signer.ledger import cli as ledger_cli

    if args.verify:
        return ledger_cli.verify(
            argparse.Namespace(
                config=args.config,
                ledger=None,
                chain=KEY_EVENTS_CHAIN,
                audit_key=None,
                chain_only=False,
            )
        )
    for entry in read_key_events(config.ledger_target):
        if args.json:
            print(json.dumps(entry, ensure_ascii=False))
        else:
            error = f"  ({entry['error']})" if entry.get("error") else ""
            print(
                f"{entry['time']}  {entry['op']:9} {entry['label']:20} {entry['outcome']:9} "
                f"{','.join(entry['officers'])}{error}"
            )
    return 0


def _types(text: str) -> frozenset[CertType]:
    try:
        return frozenset(CertType(t.strip()) for t in text.split(",") if t.strip())
    except ValueError as e:
        raise RequestError(f"--types: {e}; use vaccination, test, recovery") from e


def _b64_file(path: Path) -> str:
    try:
        return base64.b64encode(path.read_bytes()).decode()
    except OSError as e:
        raise RequestError(f"cannot read {path}: {e.strerror}") from e


def _with_signatures(rows: list[KeyRow], urls: list[str]) -> list[KeyRow]:
    if not urls:
        return rows
    from dataclasses import replace

    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for url in urls:
        target = url if url.endswith("/metrics") else url.rstrip("/") + "/metrics"
        try:
            with urllib.request.urlopen(target, timeout=10) as response:  # noqa: S310 - operator URL
                text = response.read().decode()
        except OSError as e:
            raise RequestError(f"cannot read {target}: {e}") from e
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "hcert_signatures_total":
                    counts[s.labels["kid"]] = counts.get(s.labels["kid"], 0) + s.value
    return [replace(r, signatures=int(counts.get(_b64kid(r.kid), 0))) if r.kid else r for r in rows]


def _b64kid(kid_hex: str | None) -> str:
    return base64.b64encode(bytes.fromhex(kid_hex or "")).decode()


def _table(rows: list[KeyRow]) -> None:
    print(
        f"{'label':22} {'kid':16} {'alg':5} {'types':24} {'state':18} {'active from':17} "
        f"{'retire at':17} {'DSC valid until':17} {'signatures':>10}"
    )
    for r in rows:
        sigs = "-" if r.signatures is None else str(r.signatures)
        print(
            f"{r.label:22} {r.kid or '-':16} {r.alg:5} {','.join(r.types):24} {r.state:18} "
            f"{_time(r.active_from):17} {_time(r.retire_at):17} {_time(r.dsc_not_after):17} "
            f"{sigs:>10}"
        )


def _time(epoch: int | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _short(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v[:16] + "…" if isinstance(v, str) and len(v) > 40 else v) for k, v in params.items()
    }


def _say(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(data))
    else:
        print("  ".join(f"{k}={v}" for k, v in data.items()))
