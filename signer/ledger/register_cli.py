"""``signer audit register FILE --officer-key K``: dual-controlled registration (issue 8 §6).

Run twice, by two officers, as ``signer keys`` operations are: the first run checks every line
and stores a registration proposal in the token (the file's SHA-256 and count, signed); the
second officer's run of the same command on the same file checks the lines again, adds their
signature and, with ``required_approvals`` officers, writes the records into the ledger's
``registered`` chain (``--chain``), skipping (and counting) any certificate some chain already
has. The writer takes the chain's lock, so two imports never interleave (ADR 0006).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from hsm import HsmError
from signer.config import load_config
from signer.errors import BackendError, KeyStateError, RequestError
from signer.keys.csca import load_cscas
from signer.keys.officers import OfficerKey
from signer.keys.registry import KeyRegistry
from signer.keys.roster import approval_policy
from signer.ledger import registration
from signer.ledger.anchor import HeadKeeper
from signer.ledger.checkpoints import Checkpoint, Head, key_id
from signer.ledger.events import KeyEventLog
from signer.ledger.records import Entry, encode
from signer.ledger.registration import RPC, Checked, Registration
from signer.ledger.store import LedgerStore, check_target, open_store
from signer.token import open_existing_token

CHAIN = "registered"
BATCH = 1000
SHOWN_PROBLEMS = 20


def add_register_parser(verbs: Any) -> None:
    register = verbs.add_parser(
        "register",
        help="register certificates issued before the ledger (two officers)",
        description="Register HC1 strings (one per line) that this appliance's keys signed "
        "before the ledger existed, so Reissue and revocation know them. Every line must "
        "verify under a DSC in the token (any state, expiry ignored) and be dated within its "
        "key's period, as Reissue demands; one that does not stops the run (exit 2) and is "
        "named. Dual control: the first officer's run stores a proposal in the token (the "
        "file's SHA-256 and count); a second officer runs the same command on the same file "
        "and the records are written, once: certificates any chain already has are skipped "
        "and counted. Client identity officer:<names>, RPC Register.",
    )
    register.add_argument("file", type=Path, help="HC1 strings, one per line")
    register.add_argument(
        "--officer-key",
        type=Path,
        required=True,
        metavar="PEM",
        help="your Ed25519 officer key (passphrase from $HCERT_OFFICER_PASSPHRASE)",
    )
    register.add_argument("--config", type=Path, help="TOML config (default: embedded dev)")
    register.add_argument(
        "--ledger", help="the ledger: a SQLite file or a postgresql:// URL; overrides the config"
    )
    register.add_argument("--chain", default=CHAIN, help=f"the chain written (default {CHAIN})")


def run_register(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    target = check_target(args.ledger, "--ledger") if args.ledger else config.ledger_target
    try:
        data = args.file.read_bytes()
    except OSError as e:
        raise RequestError(f"cannot read {args.file}: {e.strerror}") from e
    token = open_existing_token(config)
    try:
        events = KeyEventLog(target, token)
        policy = approval_policy(config, token)
        officer = OfficerKey.load(args.officer_key, policy.roster)
        registry = KeyRegistry(token, policy, load_cscas(config), config.issuer.key_usage_days)
        registry.refresh(time.time())
        checked = registration.check_file(data, registry, config.issuer.country, _say)
        if checked.problems:
            return _refuse(args.file, checked, events, officer)
        if not checked.entries:
            raise RequestError(f"{args.file} holds no HC1 strings: nothing to register")
        found = registration.pending(token, checked.sha256, time.time())
        if found is None:
            proposal = Registration.new(
                checked.sha256, len(checked.entries), officer, config.officers.proposal_hours * 3600
            )
            registration.store(token, proposal)
            _trail(events, [officer.name], proposal, "proposed")
            _say(
                f"registration {proposal.id}: {proposal.count} certificates in {args.file} "
                f"(SHA-256 {proposal.sha256}), signed by {officer.name}; a second officer runs:\n"
                f"  signer audit register {args.file} --officer-key THEIR_KEY.pem"
            )
            return 0
        approvers = found.approvers(policy)
        if found.proposed_by not in approvers or len(approvers) != len(found.approvals):
            raise KeyStateError(
                f"registration {found.id} carries a signature that is not a roster officer's: "
                "it is refused; propose again"
            )
        if officer.name in approvers:
            raise KeyStateError(
                f"you ({officer.name}) signed registration {found.id} already: another officer "
                "approves it"
            )
        approved = found.approved_by(officer)
        approvers = approved.approvers(policy)
        if len(approvers) < policy.required:
            registration.store(token, approved)
            _trail(events, sorted(approvers), approved, "approved")
            _say(f"registration {found.id}: {len(approvers)} of {policy.required} approvals")
            return 0
        names = sorted(approvers)
        written, skipped = _write(target, args.chain, checked, names, HeadKeeper(token))
        registration.remove(token, approved)
        _trail(events, names, approved, "executed", written=written, skipped=skipped)
        _say(
            f"registered {written} certificates on chain {args.chain!r} as officer:"
            f"{','.join(names)}; {skipped} the ledger already had were skipped"
        )
        print(json.dumps({"registered": written, "skipped": skipped, "chain": args.chain}))
        return 0
    except HsmError as e:
        raise BackendError(f"the HSM failed: {e}") from e
    finally:
        token.close()


def _write(
    target: str, chain: str, checked: Checked, officers: list[str], keeper: HeadKeeper
) -> tuple[int, int]:
    """Append the entries the ledger does not know yet, a batch per transaction, then anchor
    the chain's head in the HSM as a checkpoint (ADR 0007)."""
    client = "officer:" + ",".join(officers)
    store: LedgerStore = open_store(target, chain)  # takes the chain's lock
    try:
        written = skipped = 0
        seen: set[bytes] = set()
        for start in range(0, len(checked.entries), BATCH):
            batch = checked.entries[start : start + BATCH]
            known = store.known([e.signature for e in batch])
            fresh: list[Entry] = []
            for entry in batch:
                if entry.signature in known or entry.signature in seen:
                    skipped += 1
                    continue
                seen.add(entry.signature)
                fresh.append(entry._replace(client=client, rpc=RPC))
            if fresh:
                store.append([(e.signature, encode(e)) for e in fresh])
                written += len(fresh)
            if len(checked.entries) > BATCH:
                _say(f"{start + len(batch)} of {len(checked.entries)} written or skipped")
        if written:
            _checkpoint(store, keeper)
        return written, skipped
    finally:
        store.close()


def _checkpoint(store: LedgerStore, keeper: HeadKeeper) -> None:
    seq, hash = store.tip
    expected = keeper.stored(store.chain)
    head = Head(store.chain, seq, hash, time.time_ns() // 1000)
    result = keeper.advance(head, expected)
    if isinstance(result, bytes):  # someone moved the head between our read and write
        raise BackendError(f"the HSM's head of chain {store.chain!r} moved while writing; retry")
    public, signature = result
    store.add_checkpoint(Checkpoint(head, key_id(public), signature))


def _refuse(path: Path, checked: Checked, events: KeyEventLog, officer: OfficerKey) -> int:
    for problem in checked.problems[:SHOWN_PROBLEMS]:
        _say(f"{path}:{problem.line}: {problem.code}: {problem.message}")
    more = len(checked.problems) - SHOWN_PROBLEMS
    if more > 0:
        _say(f"… and {more} more")
    _say(
        f"error: {len(checked.problems)} line(s) of {path} cannot be registered (not signed by "
        "this appliance's keys, or dated outside their key's period): nothing proposed; remove "
        "them and run again"
    )
    events.append(
        op="register",
        officers=[officer.name],
        label=CHAIN,
        kid=None,
        params={"sha256": checked.sha256, "refused_lines": len(checked.problems)},
        outcome="refused",
        error=checked.problems[0].code,
    )
    return 2


def _trail(
    events: KeyEventLog,
    officers: list[str],
    proposal: Registration,
    outcome: str,
    **extra: int,
) -> None:
    events.append(
        op="register",
        officers=officers,
        label=CHAIN,
        kid=None,
        params={"id": proposal.id, "sha256": proposal.sha256, "count": proposal.count, **extra},
        outcome=outcome,
    )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
