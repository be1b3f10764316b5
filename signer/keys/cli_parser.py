"""Argument parsers of ``signer keys`` and ``signer dev-ca``, kept free of heavy imports.

``signer.cli`` builds its parser on every start; the HSM, crypto and lifecycle modules are
imported only when a ``keys`` / ``dev-ca`` command actually runs (:mod:`signer.keys.cli`,
:mod:`signer.keys.devca_cli`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

NOT_FOR_PRODUCTION = "NOT FOR PRODUCTION"  # same words as signer.keys.devca


_DESCRIPTION = """\
Security officers manage the appliance's document-signer (DSC) keys directly in the HSM, with
the token PIN from $HCERT_SIGNER_PIN or [hsm] pin_file (never from the config file).

import-cert, activate, retire and destroy are under dual control: the first officer's command
(with --officer-key) stores a signed proposal in the token and prints its id; a second officer
completes it with 'signer keys approve ID --officer-key B.pem'. Running servers pick up a
change within [hsm] key_refresh_seconds. Every call, refusals included, is recorded in the
issuance ledger's key-events chain and checkpointed in the HSM at once; a JSON-lines trail
left at [audit] path by an older version is imported once. Rotation step by step:
docs/rotation-runbook.md.
"""


def add_keys_parser(commands: Any) -> None:
    """Register ``keys`` and its subcommands on the top-level subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML config (default: embedded dev defaults)")
    common.add_argument("--json", action="store_true", help="JSON output instead of a table")
    officer = argparse.ArgumentParser(add_help=False)
    officer.add_argument(
        "--officer-key",
        type=Path,
        required=True,
        help="your Ed25519 officer private key (PEM; passphrase from $HCERT_OFFICER_PASSPHRASE)",
    )
    keys = commands.add_parser(
        "keys",
        help="security officers: generate, certify, rotate and destroy DSC keys in the HSM",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, description: str, *parents: Any) -> Any:
        return sub.add_parser(
            name, help=help_text, description=description, parents=[common, *parents]
        )

    p = add(
        "generate",
        "generate a key pair in the HSM (state pending)",
        "Generate a sign-only, sensitive, never-extractable key pair inside the token and record "
        "the certificate types it is for. Nothing private leaves the HSM. RSA (PS256) generation "
        "can take several seconds. Next: 'signer keys csr'.",
    )
    p.add_argument("--label", required=True, help="unique key label, e.g. dsc-2025-h2")
    p.add_argument("--alg", choices=["ES256", "PS256"], default="ES256", help="default ES256")
    p.add_argument(
        "--types",
        default="vaccination,test,recovery",
        help="comma-separated certificate types the DSC will allow (default: all three)",
    )
    p = add(
        "csr",
        "write a PKCS#10 request for a key, signed inside the HSM",
        "Build a PKCS#10 certificate request for the key; its signature is made in the HSM. "
        "Send it to your CSCA (dev: 'signer dev-ca issue').",
    )
    p.add_argument("--label", required=True)
    p.add_argument(
        "--subject",
        required=True,
        help='DSC subject, e.g. "CN=VN DSC 2025-2,O=Ministry of Health,C=VN" (CN, O, OU, C, L, '
        "ST; CN and C required; escape commas in values as \\,)",
    )
    p.add_argument("--out", type=Path, help="write the PEM here (default: stdout)")
    p = add(
        "import-cert",
        "propose storing a DSC for a key (dual control)",
        "Check the DSC (public key = the HSM key, keyUsage digitalSignature, DCC EKU = the key's "
        "types, subject C = [issuer] country, not expired, issued by a CSCA of [issuer] csca "
        "within its validity, AKI = CSCA SKI) and propose storing it; a second officer approves.",
        officer,
    )
    p.add_argument("--label", required=True)
    p.add_argument("certificate", type=Path, help="the DSC (PEM or DER)")
    p.add_argument(
        "--csca",
        type=Path,
        help="check the chain against this one of the [issuer] csca certificates only",
    )
    for name, verb in (("activate", "start"), ("retire", "stop")):
        p = add(
            name,
            f"propose to {verb} signing with a key (dual control)",
            f"Propose to {verb} signing with the key at --at (default: as soon as approved). "
            "Servers switch within [hsm] key_refresh_seconds of that time; a second officer "
            "approves.",
            officer,
        )
        p.add_argument("--label", required=True)
        p.add_argument("--at", help="ISO 8601 instant, e.g. 2026-01-15T00:00Z (UTC if no zone)")
    p = add(
        "destroy",
        "propose destroying a retired key, its DSC and state (dual control)",
        "Propose destroying a retired key: private and public key, DSC and state record. Refused "
        "while the DSC is still valid (the DSC leaves this appliance's trust list) unless "
        "--force with a --reason, which is recorded.",
        officer,
    )
    p.add_argument("--label", required=True)
    p.add_argument("--force", action="store_true", help="destroy although the DSC is valid")
    p.add_argument("--reason", default="", help="why (required with --force)")
    p = add(
        "approve",
        "approve another officer's proposal (runs it once enough officers signed)",
        "Check the proposal's signatures against the roster, re-check the operation against "
        "the token, add your signature and, with [officers] required_approvals signatures, "
        "execute it. You cannot approve your own proposal.",
        officer,
    )
    p.add_argument("proposal", help="proposal id (signer keys proposals)")
    add("proposals", "list pending proposals", "List proposals waiting for approval.")
    p = add(
        "list",
        "list the keys in the token",
        "Label, kid, alg, types, state, activation/retirement times, DSC validity and approving "
        "officers. 'signatures' comes from the servers' /metrics (--metrics, repeatable, summed); "
        "the counter restarts with the server.",
    )
    p.add_argument("--metrics", action="append", default=[], help="e.g. http://127.0.0.1:9464")
    _add_roster_parser(sub, officer)
    p = add(
        "audit",
        "print or verify the key events in the ledger",
        "Print the key-events chain of the issuance ledger: every proposal, approval, state "
        "change and refusal, and the replays the servers refused.",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="check the chain, its checkpoints and the HSM's head (as 'signer audit verify "
        "--chain key-events'); exit 1 if broken",
    )


_ROSTER_DESCRIPTION = """\
The officer roster is a signed document in [officers] directory: roster.1.json, roster.2.json,
… Version 1 is pinned by [officers] roster_sha256 and signed by its own officers; every later
version needs required_approvals signatures of the version before and of its own officers.
Servers and 'signer keys' use only the newest version that chains from the pin; a public key
file copied into the directory counts for nothing.

  signer keys roster propose --add carol=carol.pub.pem --officer-key A.pem   # writes a file
  signer keys roster sign roster.2.proposed.json --officer-key B.pem         # installs it

With no roster yet, 'propose --add …' starts version 1; once its officers have signed it,
'sign' prints the pin for the config.
"""


def _add_roster_parser(sub: Any, officer: Any) -> None:
    roster = sub.add_parser(
        "roster",
        help="show or change the signed officer roster (who approves key operations)",
        description=_ROSTER_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = roster.add_subparsers(dest="roster_command", required=True, metavar="VERB")
    verbs.add_parser(
        "show",
        help="the roster's versions, from the pin to the newest (refused when it does not chain)",
        description="Walk the roster from the pinned version 1 to the newest and print each "
        "version: officers, threshold, who signed it; exit 2 at the first break.",
        parents=[_common()],
    )
    p = verbs.add_parser(
        "propose",
        help="write the next roster version, signed by you, to a file",
        description="Write version N+1 (version 1 when there is no roster yet): the current "
        "officers plus --add, minus --remove, with --threshold (default: unchanged, 2 for "
        "version 1). Signed with your key; other officers sign it with 'roster sign'. Nothing "
        "changes until it is complete.",
        parents=[_common(), officer],
    )
    p.add_argument(
        "--add", action="append", default=[], metavar="NAME=PUB.pem", help="add an officer"
    )
    p.add_argument("--remove", action="append", default=[], metavar="NAME", help="remove one")
    p.add_argument("--threshold", type=int, help="required_approvals of the new version (≥ 2)")
    p.add_argument("--out", type=Path, help="the proposal file (default: ./roster.N.proposed.json)")
    p = verbs.add_parser(
        "sign",
        help="add your signature to a roster proposal; installs it once complete",
        description="Check FILE against the current roster, add your signature (you must be "
        "an officer of the current or of the proposed version) and, once it has "
        "required_approvals signatures of the current officers and of its own, install it as "
        "roster.N.json in [officers] directory. Servers use it from their next start.",
        parents=[_common(), officer],
    )
    p.add_argument("file", type=Path, help="the proposal written by 'roster propose'")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML config (default: embedded dev defaults)")
    common.add_argument("--json", action="store_true", help="JSON output")
    return common


DEV_CA_BANNER = (
    f"*** signer dev-ca: DEVELOPMENT CA, {NOT_FOR_PRODUCTION}. Its private key is a plain file; "
    "certificates it issues must never reach a production trust list. ***"
)


def add_devca_parser(commands: Any) -> None:
    """Register ``dev-ca`` (init, issue)."""
    devca = commands.add_parser(
        "dev-ca",
        help=f"development CSCA: issue DSCs from CSRs ({NOT_FOR_PRODUCTION})",
        description=DEV_CA_BANNER + "\nOnly with a development config ([dev] bootstrap = true).",
    )
    sub = devca.add_subparsers(dest="devca_command", required=True, metavar="COMMAND")
    init = sub.add_parser("init", help="create or show the dev CSCA", description=DEV_CA_BANNER)
    init.add_argument("--config", type=Path, help="TOML config (default: embedded dev defaults)")
    issue = sub.add_parser(
        "issue",
        help="issue a DSC for a CSR (signer keys csr)",
        description=DEV_CA_BANNER + "\nThe DSC takes the CSR's subject and key, keyUsage "
        "digitalSignature, the DCC EKU OIDs of --types, AKI = the dev CSCA's SKI.",
    )
    issue.add_argument("--config", type=Path, help="TOML config (default: embedded dev defaults)")
    issue.add_argument("--csr", type=Path, required=True, help="PKCS#10 request (PEM or DER)")
    issue.add_argument(
        "--types", default="vaccination,test,recovery", help="comma-separated DCC types"
    )
    issue.add_argument("--out", type=Path, required=True, help="where to write the DSC PEM")
    issue.add_argument("--days", type=int, default=730, help="validity in days (default 730)")
    issue.add_argument(
        "--valid-from", help="ISO 8601 notBefore (default: one hour ago); may be in the past"
    )
