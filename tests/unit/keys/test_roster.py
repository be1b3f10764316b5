"""The signed officer roster (issue 8 §8): which chains of roster files are trusted.

Table-driven like python-tuf's key-rotation tests: each case lays out roster files in a
directory, signed by some officers, and says whether the chain from the pinned version 1 holds
and, if not, what the refusal names.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hsm import HsmToken
from signer.cli import main
from signer.config import load_config
from signer.errors import ConfigError
from signer.keys.officers import OfficerKey, Roster, create_officer, load_public_key, raw_key
from signer.keys.roster import (
    SEEN_APPLICATION,
    RosterDocument,
    approval_policy,
    create_first_roster,
    load_chain,
    remember_newest,
    roster_file,
)


@dataclass
class World:
    """Officers alice, bob, carol (keys in ``keys``), outsiders mallory and eve, and a roster
    directory whose version 1 lists alice and bob (threshold 2), pinned by ``pin``."""

    keys: Path
    roster: Path
    pin: str

    def key(self, name: str) -> Path:
        return self.keys / f"{name}.key.pem"

    def officer(self, name: str, *documents: RosterDocument) -> OfficerKey:
        officers: dict[str, Ed25519PublicKey] = {}
        for d in documents:
            officers.update(d.roster(self.roster).officers)
        return OfficerKey.load(self.key(name), Roster(self.roster, officers))

    def raw(self, name: str) -> bytes:
        return raw_key(load_public_key(self.keys / f"{name}.pub.pem"))

    def version(self, n: int) -> RosterDocument:
        return RosterDocument.load(roster_file(self.roster, n))

    def next(
        self, previous: RosterDocument, officers: list[str], signers: list[str], threshold: int = 2
    ) -> RosterDocument:
        document = RosterDocument(
            previous.version + 1, {n: self.raw(n) for n in officers}, threshold
        )
        for name in signers:
            document = document.signed_by(self.officer(name, previous, document))
        return document

    def write_text(self, version: int, text: str) -> None:
        roster_file(self.roster, version).write_text(text)

    def write(self, *documents: RosterDocument, version: int | None = None) -> None:
        for document in documents:
            path = roster_file(self.roster, version or document.version)
            path.write_bytes(document.to_bytes())


@pytest.fixture
def world(tmp_path: Path) -> World:
    keys = tmp_path / "keys"
    for name in ("alice", "bob", "carol", "mallory", "eve"):
        create_officer(keys, name)
    roster = tmp_path / "roster"
    roster.mkdir()
    first = create_first_roster(roster, [keys / "alice.key.pem", keys / "bob.key.pem"], 2)
    return World(keys, roster, first.sha256())


def _self_signed(w: World, names: list[str], version: int = 1) -> RosterDocument:
    document = RosterDocument(version, {n: w.raw(n) for n in names}, 2)
    for name in names:
        document = document.signed_by(w.officer(name, document))
    return document


# Each case changes the world and names the words the refusal must contain (None: it holds).
CASES: list[tuple[str, Callable[[World], None], str | None]] = [
    ("version 1 alone", lambda w: None, None),
    (
        "rotation: carol added with the old officers' signatures",
        lambda w: w.write(w.next(w.version(1), ["alice", "bob", "carol"], ["alice", "bob"])),
        None,
    ),
    (
        "two rotations: bob removed in version 3 by alice and carol",
        lambda w: w.write(
            w.next(w.version(1), ["alice", "bob", "carol"], ["alice", "bob"]),
            w.next(
                w.next(w.version(1), ["alice", "bob", "carol"], ["alice", "bob"]),
                ["alice", "carol"],
                ["alice", "carol"],
            ),
        ),
        None,
    ),
    (
        "swap: version 1 replaced by a roster mallory and eve signed themselves",
        lambda w: w.write(_self_signed(w, ["mallory", "eve"])),
        "not the pinned [officers] roster_sha256",
    ),
    (
        "swap: a version 2 of mallory and eve, signed only by themselves",
        lambda w: w.write(_self_signed(w, ["mallory", "eve"], version=2)),
        "a new roster needs 2 of them",
    ),
    (
        "one old officer and the newcomer are not enough",
        lambda w: w.write(w.next(w.version(1), ["alice", "bob", "carol"], ["alice", "carol"])),
        "signed by 1 officer(s) of version 1 (alice)",
    ),
    (
        "the new roster must reach its own threshold",
        lambda w: w.write(w.next(w.version(1), ["alice", "carol", "eve"], ["alice", "bob"])),
        "signed by 1 of its own officers (alice)",
    ),
    (
        "threshold 1 is never dual control",
        lambda w: w.write(w.next(w.version(1), ["alice", "bob"], ["alice", "bob"], threshold=1)),
        "dual control needs ≥ 2",
    ),
    (
        "a gap: version 3 without version 2",
        lambda w: w.write(
            w.next(w.version(1), ["alice", "bob", "carol"], ["alice", "bob"]), version=3
        ),
        "roster.2.json is missing but version 3 exists",
    ),
    (
        "a version that goes backwards: version 1's content filed as version 2",
        lambda w: w.write(w.version(1), version=2),
        "holds version 1, not 2",
    ),
    (
        "a signature moved from another content does not count",
        lambda w: w.write(
            RosterDocument(
                2,
                {n: w.raw(n) for n in ("alice", "bob", "carol")},
                2,
                w.version(1).signatures,
            )
        ),
        "signed by 0 of its own officers",
    ),
    (
        "an edited version 1 (signatures kept) no longer has the pinned hash",
        lambda w: w.write(
            RosterDocument(
                1, {"alice": w.raw("alice"), "bob": w.raw("mallory")}, 2, w.version(1).signatures
            )
        ),
        "not the pinned",
    ),
    (
        "a file that is not a roster",
        lambda w: w.write_text(2, "{}"),
        "not a roster document",
    ),
]


@pytest.mark.parametrize(("change", "refusal"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_roster_chain(world: World, change: Callable[[World], None], refusal: str | None) -> None:
    change(world)
    if refusal is None:
        chain = load_chain(world.roster, world.pin)
        assert [d.version for d in chain] == list(range(1, len(chain) + 1))
        return
    with pytest.raises(ConfigError) as refused:
        load_chain(world.roster, world.pin)
    assert refusal in str(refused.value)


def test_public_key_files_in_the_directory_count_for_nothing(world: World) -> None:
    """The issue's attack: self-made officers' public keys copied into the directory."""
    for name in ("mallory", "eve"):
        shutil.copy(world.keys / f"{name}.pub.pem", world.roster / f"{name}.pub.pem")
    config = _config(world, "")
    policy = approval_policy(load_config(config))
    assert set(policy.roster.officers) == {"alice", "bob"} and policy.required == 2
    with pytest.raises(Exception, match="not in the roster"):
        OfficerKey.load(world.key("mallory"), policy.roster)


def test_a_roster_below_the_configured_floor_is_refused(world: World) -> None:
    config = _config(world, "", floor=3)
    with pytest.raises(ConfigError, match="fewer than \\[officers\\] required_approvals = 3"):
        approval_policy(load_config(config))


def test_a_production_config_without_a_pin_is_refused(world: World) -> None:
    config = world.roster.parent / "nopin.toml"
    config.write_text(f'[officers]\ndirectory = "{world.roster}"\n')
    with pytest.raises(ConfigError, match="roster_sha256 is not set"):
        approval_policy(load_config(config))


def test_a_rolled_back_roster_is_refused_by_a_token_that_saw_a_newer_one(
    world: World, hsm_token: HsmToken
) -> None:
    """Deleting roster.2.json (which removed bob) must not bring bob back."""
    hsm_token.delete_data(SEEN_APPLICATION, "roster")
    world.write(world.next(world.version(1), ["alice", "carol"], ["alice", "bob", "carol"]))
    remember_newest(hsm_token, load_chain(world.roster, world.pin), world.roster)
    roster_file(world.roster, 2).unlink()
    with pytest.raises(ConfigError, match="has seen version 2"):
        remember_newest(hsm_token, load_chain(world.roster, world.pin), world.roster)
    # Another version 2, also properly signed, is not the one the token saw either.
    world.write(world.next(world.version(1), ["alice", "bob", "eve"], ["alice", "bob", "eve"]))
    with pytest.raises(ConfigError, match="not the version 2 this HSM token has seen"):
        remember_newest(hsm_token, load_chain(world.roster, world.pin), world.roster)
    hsm_token.delete_data(SEEN_APPLICATION, "roster")


def _config(world: World, token: str, floor: int = 2) -> Path:
    """The officers' config; ``token``: the session token's [hsm] and [ledger] (roster steps
    are key events, written to the ledger and checkpointed in the HSM)."""
    config = world.roster.parent / "signer.toml"
    config.write_text(
        f'[officers]\ndirectory = "{world.roster}"\nroster_sha256 = "{world.pin}"\n'
        f"required_approvals = {floor}\n{token}"
    )
    return config


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object], str]:
    code = main(["keys", "roster", *args, "--json"])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines else {}, err


def test_cli_rotation_propose_sign_install_show(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], unit_token_config: str
) -> None:
    config = str(_config(world, unit_token_config))
    proposal = tmp_path / "proposal.json"
    code, result, _ = _cli(
        capsys, "propose", "--add", f"carol={world.keys / 'carol.pub.pem'}",
        "--officer-key", str(world.key("alice")), "--out", str(proposal), "--config", config,
    )  # fmt: skip
    assert code == 0 and result["version"] == 2 and result["installed"] is None
    assert not roster_file(world.roster, 2).exists()  # a proposal changes nothing
    assert set(approval_policy(load_config(Path(config))).roster.officers) == {"alice", "bob"}

    # An outsider cannot sign it, and alice signing again adds no second voice.
    code, _, err = _cli(capsys, "sign", str(proposal), "--officer-key", str(world.key("mallory")),
                        "--config", config)  # fmt: skip
    assert code == 2 and "neither an officer of the current roster" in err
    code, result, _ = _cli(capsys, "sign", str(proposal), "--officer-key", str(world.key("alice")),
                           "--config", config)  # fmt: skip
    assert result["installed"] is None and result["signed_by_previous"] == ["alice"]

    code, result, _ = _cli(capsys, "sign", str(proposal), "--officer-key", str(world.key("bob")),
                           "--config", config)  # fmt: skip
    assert code == 0 and result["installed"] == str(roster_file(world.roster, 2))
    policy = approval_policy(load_config(Path(config)))
    assert set(policy.roster.officers) == {"alice", "bob", "carol"}

    code, shown, _ = _cli(capsys, "show", "--config", config)
    assert code == 0 and shown["pin"] == world.pin
    versions = shown["versions"]
    assert isinstance(versions, list) and [v["version"] for v in versions] == [1, 2]
    assert versions[1]["signed_by_previous"] == ["alice", "bob"]

    # The old proposal is stale now: version 2 exists.
    code, _, err = _cli(capsys, "sign", str(proposal), "--officer-key", str(world.key("carol")),
                        "--config", config)  # fmt: skip
    assert code == 2 and "stale" in err


def test_cli_first_roster_prints_its_pin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unit_token_config: str
) -> None:
    keys, roster = tmp_path / "keys", tmp_path / "roster"
    roster.mkdir()
    for name in ("alice", "bob"):
        create_officer(keys, name)
    config = tmp_path / "signer.toml"
    config.write_text(f'[officers]\ndirectory = "{roster}"\n{unit_token_config}')
    proposal = tmp_path / "first.json"
    adds = [f"--add={n}={keys / f'{n}.pub.pem'}" for n in ("alice", "bob")]
    _cli(capsys, "propose", *adds, "--officer-key", str(keys / "alice.key.pem"),
         "--out", str(proposal), "--config", str(config))  # fmt: skip
    code, result, _ = _cli(capsys, "sign", str(proposal), "--officer-key",
                           str(keys / "bob.key.pem"), "--config", str(config))  # fmt: skip
    assert code == 0 and result["installed"] == str(roster_file(roster, 1))
    pin = result["sha256"]
    assert isinstance(pin, str)
    assert [d.version for d in load_chain(roster, pin)] == [1]
    code = main(["keys", "roster", "show", "--config", str(config)])
    assert code == 2 and "roster_sha256 is not set" in capsys.readouterr().err
