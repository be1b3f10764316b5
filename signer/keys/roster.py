"""The officer roster as a signed, versioned document: the one place that decides which officers
the appliance trusts (issue 8 §8; python-tuf's root rotation is the model).

``[officers] directory`` holds every version, ``roster.1.json``, ``roster.2.json``, … Each is
``{"roster": {type, version, officers: {name: Ed25519 raw public key, base64},
required_approvals}, "signatures": [{officer, signature}]}``; an officer signs
``hcert-signer/roster/v1 ‖ 0x00 ‖ canonical JSON of "roster"`` (ADR 0005).

- Version 1 is pinned by ``[officers] roster_sha256``, the SHA-256 of its canonical content
  (signatures excluded, so signing does not move the pin), and carries ``required_approvals``
  signatures of its own officers.
- Version n+1 carries ``required_approvals`` (of version n) signatures of version n's officers
  *and* its own ``required_approvals`` signatures of its own officers, as TUF demands of a new
  root: the old officers authorise the change, the new roster proves it can reach its own
  threshold (no roster that locks its officers out, no key nobody holds counted as one).
- The chain is walked from the pinned version 1 to the newest file; a wrong hash, too few
  signatures, a version number that is not the file's, or a missing version stops it: the
  roster is refused, nothing is approved by anyone (fail closed).

Officers' ``<name>.pub.pem`` files in the directory are not read: a key counts only when a
roster that chains lists it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from signer.errors import ConfigError
from signer.keys.officers import (
    NAME,
    Approval,
    ApprovalPolicy,
    OfficerKey,
    Roster,
    canonical_json,
    raw_key,
)

if TYPE_CHECKING:
    from hsm import HsmToken
    from signer.config import Config

ROSTER_DOMAIN = "hcert-signer/roster/v1"
ROSTER_TYPE = "hcert-signer/roster"
SEEN_APPLICATION = "hcert-signer/roster-seen/v1"  # token data object: newest version seen
MIN_APPROVALS = 2  # dual control (issue 4): a roster may never let one officer act alone
_FILE = re.compile(r"^roster\.([1-9][0-9]{0,5})\.json$")


def roster_file(directory: Path, version: int) -> Path:
    return directory / f"roster.{version}.json"


@dataclass(frozen=True, slots=True)
class RosterDocument:
    """One version of the roster and the signatures it carries."""

    version: int
    officers: Mapping[str, bytes]  # name → raw Ed25519 public key (32 bytes)
    required_approvals: int
    signatures: tuple[Approval, ...] = ()

    def content(self) -> dict[str, Any]:
        """What officers sign and what version 1's pin hashes."""
        return {
            "type": ROSTER_TYPE,
            "version": self.version,
            "officers": {n: base64.b64encode(k).decode() for n, k in sorted(self.officers.items())},
            "required_approvals": self.required_approvals,
        }

    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.content())).hexdigest()

    def roster(self, directory: Path) -> Roster:
        keys = {n: Ed25519PublicKey.from_public_bytes(k) for n, k in self.officers.items()}
        return Roster(directory, keys, self.version, self.required_approvals)

    def signers(self, roster: Roster) -> frozenset[str]:
        """The distinct officers of ``roster`` whose signature over this version verifies."""
        return frozenset(
            s.officer for s in self.signatures if roster.verify(ROSTER_DOMAIN, self.content(), s)
        )

    def signed_by(self, officer: OfficerKey) -> RosterDocument:
        """This version with ``officer``'s signature added (a repeated signer replaces its own)."""
        others = tuple(s for s in self.signatures if s.officer != officer.name)
        return replace(self, signatures=(*others, officer.approve(ROSTER_DOMAIN, self.content())))

    def to_bytes(self) -> bytes:
        document = {
            "roster": self.content(),
            "signatures": [s.to_json() for s in self.signatures],
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> RosterDocument:
        """Parse strictly; ValueError for anything that is not a roster document."""
        try:
            data = json.loads(raw)
            content = data["roster"]
            if set(data) != {"roster", "signatures"} or set(content) != {
                "type",
                "version",
                "officers",
                "required_approvals",
            }:
                raise ValueError("unexpected or missing fields")
            if content["type"] != ROSTER_TYPE:
                raise ValueError(f"type is {content['type']!r}, not {ROSTER_TYPE!r}")
            version, required = content["version"], content["required_approvals"]
            if type(version) is not int or type(required) is not int or version < 1:
                raise ValueError("version and required_approvals must be integers, version ≥ 1")
            officers = {
                str(name): base64.b64decode(str(key), validate=True)
                for name, key in dict(content["officers"]).items()
            }
            signatures = tuple(Approval.from_json(s) for s in data["signatures"])
        except (KeyError, TypeError, AttributeError, binascii.Error, json.JSONDecodeError) as e:
            raise ValueError(f"not a roster document: {e}") from e
        for name, key in officers.items():
            if not NAME.match(name) or len(key) != 32:
                raise ValueError(f"officer {name!r}: names are [A-Za-z0-9._-], keys 32 bytes")
        return cls(version, officers, required, signatures)

    @classmethod
    def load(cls, path: Path) -> RosterDocument:
        try:
            return cls.from_bytes(path.read_bytes())
        except OSError as e:
            raise ConfigError(f"cannot read the roster {path}: {e.strerror}") from e
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from e


def shape_problem(document: RosterDocument) -> str | None:
    """What makes a roster unusable whatever signed it."""
    if document.required_approvals < MIN_APPROVALS:
        return f"required_approvals is {document.required_approvals}; dual control needs ≥ 2"
    if document.required_approvals > len(document.officers):
        return (
            f"required_approvals is {document.required_approvals} but it lists only "
            f"{len(document.officers)} officer(s): nothing could ever be approved"
        )
    if len({bytes(k) for k in document.officers.values()}) != len(document.officers):
        return "two officers share one key"
    return None


def chain_problem(previous: RosterDocument | None, document: RosterDocument) -> str | None:
    """Why ``document`` does not follow ``previous`` (None: version 1), or None when it does.

    The one rule for a roster change (module docstring); ``signer keys roster`` and every loader
    call it. Version 1's pin is the caller's: it is not in the document."""
    problem = shape_problem(document)
    if problem is not None:
        return problem
    directory = Path()
    own = document.signers(document.roster(directory))
    if len(own) < document.required_approvals:
        return (
            f"signed by {len(own)} of its own officers ({_names(own)}); it needs "
            f"{document.required_approvals}"
        )
    if previous is None:
        return None if document.version == 1 else f"version {document.version} is not 1"
    if document.version != previous.version + 1:
        return f"version {document.version} does not follow version {previous.version}"
    old = document.signers(previous.roster(directory))
    if len(old) < previous.required_approvals:
        return (
            f"signed by {len(old)} officer(s) of version {previous.version} ({_names(old)}); "
            f"a new roster needs {previous.required_approvals} of them"
        )
    return None


def load_chain(directory: Path, pinned_sha256: str) -> list[RosterDocument]:
    """Every version from the pinned version 1 to the newest, each checked against the one
    before; ConfigError naming the first break and what to do."""
    if not directory.is_dir():
        raise ConfigError(
            f"the officer roster directory {directory} does not exist: set [officers] directory "
            "to the directory holding roster.1.json, roster.2.json, …"
        )
    found: dict[int, Path] = {}
    for path in directory.iterdir():
        match = _FILE.match(path.name)
        if match:
            found[int(match[1])] = path
    if 1 not in found:
        raise ConfigError(
            f"{roster_file(directory, 1)} is missing: the roster's first version, pinned by "
            "[officers] roster_sha256, must be there (create it with 'signer keys roster "
            "propose' and have its officers sign it)"
        )
    missing = next(v for v in range(1, len(found) + 2) if v not in found)
    if missing <= max(found):
        raise ConfigError(
            f"{roster_file(directory, missing)} is missing but version {max(found)} exists: "
            "every version of the roster must be kept (a gap breaks the chain of signatures)"
        )
    chain: list[RosterDocument] = []
    for version in sorted(found):
        path = found[version]
        document = RosterDocument.load(path)
        if document.version != version:
            raise ConfigError(f"{path} holds version {document.version}, not {version}")
        if version == 1 and document.sha256() != pinned_sha256:
            raise ConfigError(
                f"{path} has SHA-256 {document.sha256()}, not the pinned [officers] "
                f"roster_sha256 {pinned_sha256}: it is not the roster this appliance was set up "
                "with; restore the original roster.1.json (and the versions after it)"
            )
        problem = chain_problem(chain[-1] if chain else None, document)
        if problem is not None:
            raise ConfigError(
                f"{path} does not chain from version {version - 1}: {problem}; the roster is "
                "refused (restore the signed version, or remove this unsigned file)"
                if version > 1
                else f"{path}: {problem}; the roster is refused"
            )
        chain.append(document)
    return chain


def newest_roster(directory: Path, pinned_sha256: str) -> tuple[Roster, RosterDocument]:
    """The roster that chains from the pin: the one every approval is checked against."""
    chain = load_chain(directory, pinned_sha256)
    return chain[-1].roster(directory), chain[-1]


def approval_policy(config: Config, token: HsmToken | None = None) -> ApprovalPolicy:
    """The roster that chains from ``[officers] roster_sha256`` and its threshold: what the
    servers' registry and every officer command check approvals against. With ``token`` the
    roster may not be older than the newest version this token has seen (rollback, below)."""
    chain = load_chain(config.officers_dir, config.roster_sha256)
    newest = chain[-1]
    floor = config.officers.required_approvals
    if newest.required_approvals < floor:
        raise ConfigError(
            f"roster version {newest.version} asks for {newest.required_approvals} approvals, "
            f"fewer than [officers] required_approvals = {floor}: raise its threshold with "
            "'signer keys roster propose --threshold N', or lower the floor in the config"
        )
    if token is not None:
        remember_newest(token, chain, config.officers_dir)
    return ApprovalPolicy(newest.roster(config.officers_dir), newest.required_approvals)


def remember_newest(token: HsmToken, chain: list[RosterDocument], directory: Path) -> None:
    """Keep the newest roster version seen in the token and refuse a chain that ends before it
    or differs from it (TUF: the highest version seen is kept durably). Without this, deleting
    the newest file would bring back an officer that version removed."""
    newest = chain[-1]
    seen: tuple[int, str] = (0, "")
    for data in token.data_objects(SEEN_APPLICATION):
        try:
            value = json.loads(data.value)
            seen = max(seen, (int(value["version"]), str(value["sha256"])))
        except (ValueError, KeyError, TypeError):
            continue
    version, sha256 = seen
    if version > newest.version:
        raise ConfigError(
            f"the roster in {directory} ends at version {newest.version}, but this HSM token "
            f"has seen version {version}: a newer roster was removed; restore "
            f"{roster_file(directory, version).name} (rolling the roster back is refused)"
        )
    if version and chain[version - 1].sha256() != sha256:
        raise ConfigError(
            f"{roster_file(directory, version)} is not the version {version} this HSM token has "
            "seen (another document with the same number): restore the one the officers signed"
        )
    if version < newest.version:
        value = json.dumps({"version": newest.version, "sha256": newest.sha256()}).encode()
        token.put_data(SEEN_APPLICATION, "roster", value)


def create_first_roster(directory: Path, keys: Iterable[Path], required: int) -> RosterDocument:
    """Write ``roster.1.json`` listing the officers of ``keys`` (their Ed25519 private key files,
    each named ``<name>.key.pem``), signed by all of them; for the dev bootstrap and tests.
    Production officers run ``signer keys roster propose`` / ``sign`` on their own machines."""
    paths = list(keys)
    officers: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        officers[path.name.removesuffix(".key.pem")] = _private(path).public_key()
    document = RosterDocument(1, public_keys(officers), required)
    draft = document.roster(directory)
    for path in paths:
        document = document.signed_by(OfficerKey.load(path, draft))
    roster_file(directory, 1).write_bytes(document.to_bytes())
    return document


def _private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def _names(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def public_keys(mapping: Mapping[str, Ed25519PublicKey]) -> dict[str, bytes]:
    return {name: raw_key(key) for name, key in mapping.items()}
