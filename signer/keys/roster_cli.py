"""``signer keys roster show | propose | sign``: officers change the roster they are on (§8).

A change is a file, not a token object: the roster must be readable before anyone logs in to the
HSM (it decides whose approvals count), and it ends up as ``roster.N.json`` in ``[officers]
directory``, which operations deploy. ``propose`` writes version N+1 signed by its proposer;
``sign`` adds one officer's signature and, once the rule of :func:`chain_problem` holds (enough
signatures of version N's officers and of N+1's own), installs it as ``roster.N+1.json``. Until
then the file is only a proposal and changes nothing. Every step goes to the audit trail.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from pathlib import Path
from typing import Any

from signer.config import Config
from signer.errors import ConfigError, KeyStateError, RequestError
from signer.keys.officers import NAME, OfficerKey, Roster, load_public_key, raw_key
from signer.keys.roster import (
    ROSTER_DOMAIN,
    RosterDocument,
    chain_problem,
    load_chain,
    roster_file,
    shape_problem,
)
from signer.ledger.events import KeyEventLog
from signer.token import open_existing_token


def run_roster(config: Config, args: argparse.Namespace) -> int:
    command = args.roster_command
    if command == "show":
        return _show(config, args)
    if command == "propose":
        return _propose(config, args)
    return _sign(config, args)


def _show(config: Config, args: argparse.Namespace) -> int:
    chain = load_chain(config.officers_dir, config.roster_sha256)
    rows: list[dict[str, Any]] = []
    for i, document in enumerate(chain):
        previous = chain[i - 1].roster(Path()) if i else None
        rows.append(
            {
                "version": document.version,
                "sha256": document.sha256(),
                "required_approvals": document.required_approvals,
                "officers": {
                    name: base64.b64encode(key).decode()
                    for name, key in sorted(document.officers.items())
                },
                "signed_by": sorted(document.signers(document.roster(Path()))),
                "signed_by_previous": None
                if previous is None
                else sorted(document.signers(previous)),
            }
        )
    if args.json:
        pin = chain[0].sha256()
        print(json.dumps({"directory": str(config.officers_dir), "pin": pin, "versions": rows}))
        return 0
    print(f"officer roster {config.officers_dir}: version {chain[-1].version}, chains from the pin")
    print(f"pin ([officers] roster_sha256): {chain[0].sha256()}")
    for i, document in enumerate(chain):
        own = ", ".join(sorted(document.signers(document.roster(Path()))))
        by_previous = ""
        if i:
            earlier = ", ".join(sorted(document.signers(chain[i - 1].roster(Path()))))
            by_previous = f"; by version {document.version - 1}: {earlier}"
        print(
            f"  version {document.version}  needs {document.required_approvals}  officers "
            f"{', '.join(sorted(document.officers))}  signed by {own}{by_previous}"
        )
    return 0


def _propose(config: Config, args: argparse.Namespace) -> int:
    directory = config.officers_dir
    added = dict(_added(spec) for spec in args.add)
    previous: RosterDocument | None = None
    if roster_file(directory, 1).exists():
        previous = load_chain(directory, config.roster_sha256)[-1]
        officers = {n: k for n, k in previous.officers.items() if n not in args.remove}
        unknown = sorted(set(args.remove) - set(previous.officers))
        if unknown:
            raise RequestError(
                f"--remove {', '.join(unknown)}: not in roster version {previous.version} "
                f"({', '.join(sorted(previous.officers))})"
            )
        clash = sorted(set(added) & set(officers))
        if clash:
            raise RequestError(
                f"--add {', '.join(clash)}: already an officer; --remove the name too to "
                "replace its key"
            )
        threshold = args.threshold or previous.required_approvals
    else:
        if args.remove:
            raise RequestError(f"there is no roster yet in {directory}: nothing to --remove")
        officers, threshold = {}, args.threshold or 2
    officers.update(added)
    document = RosterDocument(previous.version + 1 if previous else 1, officers, threshold)
    unchanged = {**previous.content(), "version": document.version} if previous else None
    if document.content() == unchanged:
        raise RequestError("the proposal changes nothing: give --add, --remove or --threshold")
    problem = shape_problem(document)
    if problem is not None:
        raise RequestError(f"roster version {document.version} would be unusable: {problem}")
    officer = _officer(args.officer_key, previous, document, directory)
    document = document.signed_by(officer)
    out: Path = args.out or Path(f"roster.{document.version}.proposed.json")
    _write(out, document)
    _trail(config, "roster-propose", officer.name, document, "proposed")
    return _status(args, document, previous, out, installed=None)


def _sign(config: Config, args: argparse.Namespace) -> int:
    directory = config.officers_dir
    path: Path = args.file
    document = RosterDocument.load(path)
    previous: RosterDocument | None = None
    if document.version > 1:
        chain = load_chain(directory, config.roster_sha256)
        if chain[-1].version != document.version - 1:
            raise KeyStateError(
                f"{path} proposes version {document.version}, but the roster is at version "
                f"{chain[-1].version}: the proposal is stale; propose again"
            )
        previous = chain[-1]
    elif roster_file(directory, 1).exists():
        raise KeyStateError(f"{path} proposes version 1, but {roster_file(directory, 1)} exists")
    officer = _officer(args.officer_key, previous, document, directory)
    document = document.signed_by(officer)
    _write(path, document)
    _trail(config, "roster-sign", officer.name, document, "signed")
    installed: Path | None = None
    if chain_problem(previous, document) is None:
        installed = _install(directory, document, path)
        _trail(config, "roster-install", officer.name, document, "installed")
    return _status(args, document, previous, path, installed)


def _install(directory: Path, document: RosterDocument, source: Path) -> Path:
    """Write the complete version into the directory, never over an existing one."""
    target = roster_file(directory, document.version)
    temporary = directory / f".{target.name}.{os.getpid()}.tmp"
    try:
        temporary.write_bytes(document.to_bytes())
        os.link(temporary, target)  # fails if the version exists: never overwrite a version
    except FileExistsError as e:
        raise KeyStateError(f"{target} exists already: the roster moved on; propose again") from e
    except OSError as e:
        raise ConfigError(
            f"{source} is complete but cannot be installed ({e.strerror}): operations copy it "
            f"to {target}"
        ) from e
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _status(
    args: argparse.Namespace,
    document: RosterDocument,
    previous: RosterDocument | None,
    path: Path,
    installed: Path | None,
) -> int:
    own = sorted(document.signers(document.roster(Path())))
    old = None if previous is None else sorted(document.signers(previous.roster(Path())))
    result: dict[str, Any] = {
        "version": document.version,
        "sha256": document.sha256(),
        "file": str(path),
        "signed_by": own,
        "signed_by_previous": old,
        "installed": str(installed) if installed else None,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    needs = f"{len(own)} of {document.required_approvals} of its own officers"
    if previous is not None:
        needs += (
            f", {len(old or [])} of {previous.required_approvals} of version {previous.version}'s"
        )
    if installed is not None:
        print(f"roster version {document.version} installed as {installed} ({needs})")
        if document.version == 1:
            print(f'pin it in the config: [officers] roster_sha256 = "{document.sha256()}"')
        else:
            print("restart the servers to use it (each worker reads the roster when it starts)")
    else:
        print(
            f"roster version {document.version} in {path}: signed by {needs}; other officers "
            f"run:\n  signer keys roster sign {path} --officer-key THEIR_KEY.pem"
        )
    return 0


def _officer(
    key: Path, previous: RosterDocument | None, document: RosterDocument, directory: Path
) -> OfficerKey:
    """The signer, found by public key among the current and the proposed officers."""
    officers = dict(document.roster(directory).officers)
    if previous is not None:
        officers.update(previous.roster(directory).officers)
    try:
        return OfficerKey.load(key, Roster(directory, officers, document.version))
    except KeyStateError as e:
        raise KeyStateError(
            f"{key} is neither an officer of the current roster nor of proposed version "
            f"{document.version}: only they sign it"
        ) from e


def _added(spec: str) -> tuple[str, bytes]:
    name, sep, path = spec.partition("=")
    if not sep or not NAME.match(name):
        raise RequestError(f"--add {spec!r}: give NAME=PUB.pem, NAME of [A-Za-z0-9._-]")
    return name, raw_key(load_public_key(Path(path)))


def _write(path: Path, document: RosterDocument) -> None:
    try:
        path.write_bytes(document.to_bytes())
    except OSError as e:
        raise RequestError(f"cannot write {path}: {e.strerror}") from e


def _trail(config: Config, op: str, officer: str, document: RosterDocument, outcome: str) -> None:
    """The roster step as a key event in the ledger (it takes the token for the checkpoint)."""
    token = open_existing_token(config)
    try:
        _append(KeyEventLog(config.ledger_target, token), op, officer, document, outcome)
    finally:
        token.close()


def _append(
    events: KeyEventLog, op: str, officer: str, document: RosterDocument, outcome: str
) -> None:
    events.append(
        op=op,
        officers=[officer],
        label=f"roster.{document.version}",
        kid=None,
        params={
            "sha256": document.sha256(),
            "domain": ROSTER_DOMAIN,
            "officers": sorted(document.officers),
            "required_approvals": document.required_approvals,
        },
        outcome=outcome,
    )
