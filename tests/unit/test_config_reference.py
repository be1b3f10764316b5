"""docs/configuration.md lists every config key with its real default, and nothing else: read
from the config dataclasses, so a new key, a changed default or a removed key fails here."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from pathlib import Path
from typing import Any

import pytest

from signer.config import ClientPolicy, Config, PolicyConfig

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(
    encoding="utf-8"
)
_SECTION = re.compile(r"^## `\[{1,2}([a-z_.]+)\]{1,2}`$", re.MULTILINE)
_ROW = re.compile(r"^\| `([a-z0-9_]+)` \| ([^|]+) \| (.+) \|$", re.MULTILINE)
_ARRAYS_OF_TABLES = {"policy": {"clients": "policy.clients"}}  # documented as their own table


def toml(value: Any) -> str:
    """A default as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return json.dumps(value.value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    raise AssertionError(f"no TOML form for {value!r}")


def _documented() -> dict[str, dict[str, str]]:
    """Section → key → the default column, from the page."""
    found: dict[str, dict[str, str]] = {}
    parts = _SECTION.split(DOC)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        rows = _ROW.findall(body)
        assert rows, f"section [{name}] has no table"
        found[name] = {key: default.strip() for key, default, _ in rows}
    return found


def _actual() -> dict[str, dict[str, str]]:
    """Section → key → its default as the page should show it."""
    config = Config()
    wanted: dict[str, dict[str, str]] = {}
    for section in dataclasses.fields(Config):
        values = getattr(config, section.name)
        nested = _ARRAYS_OF_TABLES.get(section.name, {})
        wanted[section.name] = {
            f.name: f"`{toml(getattr(values, f.name))}`"
            for f in dataclasses.fields(values)
            if f.name not in nested
        }
    wanted["policy.clients"] = {
        f.name: _client_default(f) for f in dataclasses.fields(ClientPolicy)
    }
    return wanted


def _client_default(f: dataclasses.Field[Any]) -> str:
    if f.default is dataclasses.MISSING:
        return "(required)"
    if f.default is None:  # None = the [quotas] value
        return "(`[quotas]`)"
    return f"`{toml(f.default)}`"


def test_the_nested_tables_are_the_ones_this_test_knows() -> None:
    fields = {f.name: f for f in dataclasses.fields(PolicyConfig)}
    assert set(fields) == {"default", "clients"}


@pytest.mark.parametrize("section", sorted(_actual()))
def test_every_key_of_the_section_with_its_default(section: str) -> None:
    documented = _documented()
    assert section in documented, f"docs/configuration.md has no section [{section}]"
    assert documented[section] == _actual()[section]


def test_no_section_that_the_config_does_not_have() -> None:
    assert set(_documented()) == set(_actual())


def test_the_readme_links_the_reference() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "(docs/configuration.md)" in readme
