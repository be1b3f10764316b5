"""Security officers: their Ed25519 keys, the roster, and how approvals are signed and checked.

Dual control (issue 4 §3, docs/adr/0005-key-management-and-dual-control.md): every officer holds
an Ed25519 private key file; the roster of their public keys is a signed, versioned document
(``signer.keys.roster``, issue 8 §8) that this module only holds as a :class:`Roster` once it
has been checked. An approval is an officer's signature over
canonical JSON prefixed with a domain tag, so a signature made for one purpose (a proposal)
can never be replayed as another (a key-state record).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from signer.errors import ConfigError, KeyStateError

PASSPHRASE_ENV = "HCERT_OFFICER_PASSPHRASE"  # noqa: S105 - the name of an env var
PUBLIC_SUFFIX = ".pub.pem"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def canonical_json(value: Any) -> bytes:
    """The one byte form that is signed: sorted keys, no spaces, ASCII only."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signed_bytes(domain: str, content: Mapping[str, Any]) -> bytes:
    """What an officer signs: a domain tag (e.g. ``hcert-signer/key-state/v2``), NUL, content."""
    return domain.encode() + b"\x00" + canonical_json(content)


@dataclass(frozen=True, slots=True)
class Approval:
    """One officer's signature over a canonical content."""

    officer: str
    signature: bytes

    def to_json(self) -> dict[str, str]:
        return {"officer": self.officer, "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Approval:
        return cls(str(data["officer"]), base64.b64decode(str(data["signature"]), validate=True))


@dataclass(frozen=True, slots=True)
class OfficerKey:
    """An officer's private key, loaded from the file named by ``--officer-key``."""

    name: str
    key: Ed25519PrivateKey

    def approve(self, domain: str, content: Mapping[str, Any]) -> Approval:
        return Approval(self.name, self.key.sign(signed_bytes(domain, content)))

    @classmethod
    def load(cls, path: Path, roster: Roster) -> OfficerKey:
        """Load the key and find its name in the roster by public key (the file name is not
        trusted: an officer cannot claim someone else's name by renaming a file)."""
        passphrase = os.environ.get(PASSPHRASE_ENV, "")
        try:
            key = serialization.load_pem_private_key(
                path.read_bytes(), password=passphrase.encode() if passphrase else None
            )
        except OSError as e:
            raise ConfigError(f"cannot read the officer key {path}: {e.strerror}") from e
        except (ValueError, TypeError) as e:
            raise ConfigError(
                f"{path} is not an Ed25519 private key in PEM (or the passphrase in "
                f"{PASSPHRASE_ENV} is wrong / missing): {e}"
            ) from e
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} holds a {type(key).__name__}; officer keys are Ed25519")
        name = roster.name_of(key.public_key())
        if name is None:
            raise KeyStateError(
                f"the officer key {path} is not in the roster (version {roster.version} of the "
                f"officer roster in {roster.directory}): officers add a key with 'signer keys "
                "roster propose --add NAME=PUB.pem', signed by the roster's officers"
            )
        return cls(name, key)


@dataclass(frozen=True, slots=True)
class Roster:
    """Officer name → public key: a roster version that chained from the pinned one
    (``signer.keys.roster.newest_roster``), or one under construction in a test."""

    directory: Path
    officers: Mapping[str, Ed25519PublicKey]
    version: int = 0
    required_approvals: int = 2

    def name_of(self, public_key: Ed25519PublicKey) -> str | None:
        raw = raw_key(public_key)
        return next((n for n, k in self.officers.items() if raw_key(k) == raw), None)

    def verify(self, domain: str, content: Mapping[str, Any], approval: Approval) -> bool:
        key = self.officers.get(approval.officer)
        if key is None:
            return False
        try:
            key.verify(approval.signature, signed_bytes(domain, content))
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """How many distinct roster officers must have signed a content for it to count."""

    roster: Roster
    required: int

    def approvers(
        self, domain: str, content: Mapping[str, Any], approvals: Iterable[Approval]
    ) -> frozenset[str]:
        """The distinct roster officers whose signature over ``content`` verifies."""
        return frozenset(a.officer for a in approvals if self.roster.verify(domain, content, a))

    def satisfied(
        self, domain: str, content: Mapping[str, Any], approvals: Iterable[Approval]
    ) -> bool:
        return len(self.approvers(domain, content, approvals)) >= self.required


def create_officer(directory: Path, name: str) -> Path:
    """Write ``<name>.key.pem`` (0600, unencrypted) and ``<name>.pub.pem``; the key path.

    For development and tests: production officers make their keys on their own machines
    (``openssl genpkey -algorithm ed25519``). The public key file counts for nothing by itself:
    it enters the roster through ``signer keys roster propose --add NAME=PUB.pem``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    key_path = directory / f"{name}.key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / f"{name}{PUBLIC_SUFFIX}").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An officer's Ed25519 public key from a PEM file (ConfigError naming the file)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as e:
        raise ConfigError(f"cannot read the officer public key {path}: {e.strerror}") from e
    except ValueError as e:
        raise ConfigError(f"{path} is not a PEM public key: {e}") from e
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} is not an Ed25519 public key (officer keys are Ed25519)")
    return key


def raw_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
