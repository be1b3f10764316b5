"""Officers for tests: keys made with ``create_officer`` and a signed, pinned roster of them."""

from __future__ import annotations

from pathlib import Path

from signer.keys.officers import OfficerKey, Roster, create_officer, load_public_key
from signer.keys.roster import create_first_roster, newest_roster


def signed_roster(directory: Path, *names: str, required: int = 2) -> tuple[str, Roster]:
    """Officers ``names`` in ``directory`` (created when missing) and their ``roster.1.json``
    signed by all of them; (the pin, the roster as the loader trusts it)."""
    keys = []
    for name in names:
        path = directory / f"{name}.key.pem"
        if not path.exists():
            create_officer(directory, name)
        keys.append(path)
    pin = create_first_roster(directory, keys, required).sha256()
    return pin, newest_roster(directory, pin)[0]


def unsigned_roster(directory: Path, *names: str) -> Roster:
    """Test-only: officers' public key files taken at face value (what the servers never do)."""
    officers = {n: load_public_key(directory / f"{n}.pub.pem") for n in names}
    return Roster(directory, officers)


def officer(directory: Path, name: str, roster: Roster) -> OfficerKey:
    return OfficerKey.load(directory / f"{name}.key.pem", roster)
