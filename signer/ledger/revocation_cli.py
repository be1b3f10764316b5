"""``signer audit revoke`` and ``signer audit revocations`` (issue 8 §5, docs/adr/0008)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from signer.config import Config, load_config
from signer.errors import RequestError
from signer.hcert.revocation import HASH_BYTES, HashType, truncated_sha256
from signer.keys.officers import OfficerKey
from signer.keys.roster import approval_policy
from signer.ledger import revocations
from signer.ledger.events import KEY_EVENTS_CHAIN
from signer.ledger.export import BatchBuilder
from signer.ledger.records import Entry
from signer.ledger.revoking import (
    MAX_REASON,
    Revocation,
    parse_hash,
    published_types,
    revoked_by,
)
from signer.ledger.store import LedgerError, LedgerReader, check_target, open_reader, open_sql
from signer.progress import Progress

KID_BYTES = 8
#: records between two looks at the clock for a progress line
PROGRESS_EVERY = 1000


def add_revocation_parsers(verbs: Any) -> None:
    revoke = verbs.add_parser(
        "revoke",
        help="record an officer's revocation of a certificate (by SIGNATURE hash) or a UVCI",
        description="Record a revocation in the ledger, signed with your officer key: --uci "
        "revokes every certificate with that UVCI (its re-issues too), --signature-hash one "
        "certificate. Only what the ledger has a record of can be revoked: an unknown UVCI or "
        "hash is refused (exit 2), since a revocation that matches nothing protects nothing. "
        "Revoking a hash that is revoked already changes nothing and says who revoked it "
        "(exit 0). Prints the revocation as a JSON line. Re-issue refuses revoked "
        "certificates (hc1_revoked); 'signer audit revocations --revoked-only' exports them.",
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--uci", metavar="UVCI", help="the certificate's ci, exactly as signed")
    which.add_argument(
        "--signature-hash",
        metavar="HASH",
        help="the 16-byte SIGNATURE hash in base64 (as 'signer audit show' prints it) or hex",
    )
    revoke.add_argument(
        "--reason",
        required=True,
        help=f"why, for the audit (1 to {MAX_REASON} printable characters; no personal data)",
    )
    revoke.add_argument(
        "--officer-key",
        type=Path,
        required=True,
        metavar="PEM",
        help="your Ed25519 officer private key (passphrase from $HCERT_OFFICER_PASSPHRASE); it "
        "must be in the [officers] directory roster",
    )
    _add_source_options(revoke)

    export = verbs.add_parser(
        "revocations",
        help="export DCC revocation batches (gateway upload shape) from the ledger",
        description="Write DCC revocation batches as JSON lines, one batch per line: "
        '{"country", "expires", "kid", "hashType", "entries": [{"hash"}]} as the DCC '
        "gateway takes them (kid and hashes in base64, expires = the latest exp of the "
        "batch's certificates), at most 1000 entries a batch, one batch per kid and hash type. "
        "Without --revoked-only every issued certificate matching the filters is exported "
        "(e.g. all of a client's output); with it only revoked ones: all three hashes of a "
        "certificate revoked by its UVCI, only the SIGNATURE hash of one revoked by signature "
        "(its UCI would also revoke its re-issue). Records without exp (hash-only signing) "
        "are skipped and counted. Every revocation's officer signature is checked against "
        "the roster first; one that does not verify stops the export (exit 2). Progress and "
        "a summary go to stderr.",
    )
    export.add_argument("--client", help="only certificates issued to this client identity")
    export.add_argument("--kid", help="only this kid (base64 as the trust list shows it, or hex)")
    export.add_argument(
        "--from", dest="start", metavar="TIME", help="only records from this ISO 8601 instant"
    )
    export.add_argument("--to", dest="end", metavar="TIME", help="only records before this one")
    export.add_argument("--revoked-only", action="store_true", help="only revoked certificates")
    export.add_argument(
        "--hash-type",
        action="append",
        choices=[t.value for t in HashType],
        help="only these hash types (repeatable; default all three)",
    )
    export.add_argument("--out", type=Path, help="write the batches here instead of stdout")
    _add_source_options(export)


def _add_source_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", type=Path, help="TOML config (default: embedded dev)")
    command.add_argument(
        "--ledger", help="the ledger: a SQLite file or a postgresql:// URL; overrides the config"
    )


def run_revoke(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    target = _target(args, config)
    if args.uci is not None:
        hash_type, hash = HashType.UCI, truncated_sha256(args.uci.encode())
        what = f"UVCI {args.uci!r}"
    else:
        hash_type = HashType.SIGNATURE
        hash = parse_hash(args.signature_hash, HASH_BYTES, "--signature-hash")
        what = f"SIGNATURE hash {args.signature_hash}"
    officer = OfficerKey.load(args.officer_key, approval_policy(config).roster)
    revocation = Revocation.signed(officer, hash_type, hash, args.reason, time.time_ns() // 1000)
    ledger = open_reader(target)
    try:
        covered = _records_with(ledger, hash_type, hash)
    finally:
        ledger.close()
    if not covered:
        print(
            f"error: the ledger {target} has no record of {what}: nothing revoked",
            file=sys.stderr,
        )
        return 2
    sql = open_sql(target)
    try:
        stored = revocations.add(sql, revocation)
    finally:
        sql.close()
    if stored != revocation:
        print(
            f"{what} was revoked already, at {_iso_us(stored.time_us)} by {stored.officer} "
            f"({stored.reason}); that revocation stands",
            file=sys.stderr,
        )
    else:
        print(f"revoked {what}: {len(covered)} certificate(s) in the ledger", file=sys.stderr)
    print(json.dumps({**stored.to_json(), "certificates": len(covered)}))
    return 0


def _target(args: argparse.Namespace, config: Config) -> str:
    if args.ledger is not None:
        return check_target(args.ledger, "--ledger")
    return config.ledger_target


def _records_with(ledger: LedgerReader, hash_type: HashType, hash: bytes) -> list[Entry]:
    """The ledger's records of certificates with this hash (a UVCI: every chain is read)."""
    if hash_type is HashType.SIGNATURE:
        return revocations.entries_with_signature(ledger.sql, [hash])
    return [e for e in _entries(ledger) if e.uci == hash]


def run_export(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    target = _target(args, config)
    kid = parse_hash(args.kid, KID_BYTES, "--kid") if args.kid else None
    start = _instant_us(args.start, "--from")
    end = _instant_us(args.end, "--to")
    types = tuple(HashType(t) for t in args.hash_type) if args.hash_type else tuple(HashType)
    ledger = open_reader(target)
    try:
        revoked = _verified_revocations(ledger, config) if args.revoked_only else None
        with _output(args.out) as out:
            _export(  # progress and the summary line on stderr
                ledger, config.issuer.country, revoked, types, out, kid, args.client, start, end
            )
    finally:
        ledger.close()
    return 0


def _export(
    ledger: LedgerReader,
    country: str,
    revoked: set[tuple[HashType, bytes]] | None,
    types: tuple[HashType, ...],
    out: TextIO,
    kid: bytes | None,
    client: str | None,
    start: int | None,
    end: int | None,
) -> tuple[int, int, int, int]:
    builder = BatchBuilder(country)
    read = exported = batches = no_exp = 0
    progress = Progress(sys.stderr, total=_certificate_records(ledger), noun="records")

    def detail() -> str:
        skipped = f"; {no_exp:,} without exp (hash-only) skipped" if no_exp else ""
        return f"{exported:,} certificate(s) in {batches:,} batch(es){skipped}"

    for entry in _entries(ledger):
        read += 1
        if read % PROGRESS_EVERY == 0:
            progress.update(read, detail())
        if (
            (kid is not None and entry.kid != kid)
            or (client is not None and entry.client != client)
            or (start is not None and entry.time_us < start)
            or (end is not None and entry.time_us >= end)
        ):
            continue
        wanted = types
        if revoked is not None:
            by = revoked_by(entry, revoked)
            if by is None:
                continue
            wanted = tuple(t for t in types if t in published_types(by))
        if entry.exp is None:
            no_exp += 1
            continue
        exported += 1
        for batch in builder.add(entry, wanted):
            out.write(json.dumps(batch) + "\n")
            batches += 1
    for batch in builder.finish():
        out.write(json.dumps(batch) + "\n")
        batches += 1
    progress.finish(read, detail())
    return read, exported, batches, no_exp


def _certificate_records(ledger: LedgerReader) -> int:
    """The records :func:`_entries` reads: every chain's but the key events'."""
    [(count,)] = ledger.sql.rows(
        "SELECT count(*) FROM issuance WHERE chain <> ?", (KEY_EVENTS_CHAIN,)
    )
    return int(count)


def _verified_revocations(ledger: LedgerReader, config: Config) -> set[tuple[HashType, bytes]]:
    """Every revocation, each checked against the officer roster: a row nobody signed is not
    exported (it would revoke valid certificates for whoever could write the file)."""
    roster = approval_policy(config).roster
    found = revocations.revocations(ledger.sql)
    for revocation in found:
        if not revocation.verifies(roster):
            raise RequestError(
                f"the revocation of {revocation.hash_type.value} hash "
                f"{revocation.to_json()['hash']} (officer {revocation.officer!r}) does not carry "
                f"a valid signature of a roster officer ({roster.directory}): the ledger's "
                "revocation table was edited; nothing exported"
            )
    return {(r.hash_type, r.hash) for r in found}


def _entries(ledger: LedgerReader) -> Iterator[Entry]:
    for name in ledger.chains():
        for record in ledger.records(name):
            if record.is_event:
                continue  # a key event, not a certificate
            try:
                yield record.entry
            except ValueError as e:
                raise LedgerError(
                    f"record {record.seq} of chain {name!r} does not decode ({e}): run "
                    "'signer audit verify'"
                ) from e


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8") as out:
        yield out


def _instant_us(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise RequestError(
            f"{option} {text!r} is not an ISO 8601 instant (e.g. 2027-01-31T12:00Z)"
        ) from e
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1_000_000)


def _iso_us(time_us: int) -> str:
    return dt.datetime.fromtimestamp(time_us / 1e6, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
