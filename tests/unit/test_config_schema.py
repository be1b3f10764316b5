"""Every config key refuses a value of the wrong type with one ConfigError naming the file and
the key (issue 9 §10), found by walking the config dataclasses so a new key is covered too."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from signer.config import ClientPolicy, Config, config_checked, config_from_mapping, load_config
from signer.errors import ConfigError

SOURCE = "site/signer.toml"


def _keys() -> list[tuple[str, str, Any]]:
    """(section, key, type hint) of every key a config file may set; a client's keys under
    ``policy.clients``."""
    found = []
    for section in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[section.name]
        for key, hint in typing.get_type_hints(cls).items():
            if key == "clients":
                found += [("policy.clients", k, h) for k, h in _hints(ClientPolicy).items()]
            else:
                found.append((section.name, key, hint))
    return found


def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


KEYS = _keys()


def fits(hint: Any, value: Any) -> bool:
    """The test's own reading of a TOML value against a field's annotation."""
    args = typing.get_args(hint)
    if type(None) in args:
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if hint is bool:
        return type(value) is bool
    if hint is int:
        return type(value) is int
    if hint is float:
        return type(value) in (int, float) and math.isfinite(value)
    if hint is str:
        return type(value) is str
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return type(value) is str and value in {m.value for m in hint}
    if origin is tuple:
        return type(value) is list and all(fits(args[0], v) for v in value)
    if origin is dict:
        return type(value) is dict and all(fits(args[1], v) for v in value.values())
    raise AssertionError(f"the test does not know the type {hint!r}")


def _mapping(section: str, key: str, value: Any) -> dict[str, Any]:
    if section == "policy.clients":
        return {"policy": {"clients": [{"name": "a", "roles": ["issuer"], key: value}]}}
    return {section: {key: value}}


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.dates(),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.times(),
)
#: Whatever tomllib can hand back: scalars, arrays and tables of them.
toml_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.sampled_from(KEYS), toml_values)
def test_a_value_of_the_wrong_type_in_any_key_is_one_config_error(
    key: tuple[str, str, Any], value: Any
) -> None:
    section, name, hint = key
    assume(not fits(hint, value))
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(_mapping(section, name, value), source=SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: "), message
    assert name in message and section.split(".")[-1] in message, message
    assert "expected" in message, message
    assert "\n" not in message


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(KEYS), toml_values)
def test_any_value_in_any_key_loads_or_is_a_config_error(
    key: tuple[str, str, Any], value: Any
) -> None:
    """Right type, wrong range, wrong type: a Config or a ConfigError, never anything else."""
    section, name, _ = key
    try:
        config = config_from_mapping(_mapping(section, name, value), source=SOURCE)
    except ConfigError as e:
        assert str(e).startswith(f"{SOURCE}: ") and "\n" not in str(e)
    else:
        assert isinstance(config, Config)


def _toml(value: Any) -> str:
    """A TOML inline value, written here for the test."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _toml_char(c: str) -> str:
    if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\u{ord(c):04x}"
    return c


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([k for k in KEYS if k[0] != "policy.clients"]), toml_values)
def test_a_toml_file_with_any_value_loads_or_names_the_file(
    tmp_path_factory: pytest.TempPathFactory, key: tuple[str, str, Any], value: Any
) -> None:
    section, name, hint = key
    path = tmp_path_factory.mktemp("toml") / "signer.toml"
    path.write_text(f"[{section}]\n{name} = {_toml(value)}\n", encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as e:
        message = str(e)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        assert f"[{section}] {name}" in message or f"[{section}.{name}]" in message, message
    else:
        assert fits(hint, value)


def test_every_default_written_back_loads_as_the_default() -> None:
    """The mechanism refuses nothing the defaults hold: each key set to its own default."""
    defaults = Config()
    for section, name, _ in KEYS:
        if section == "policy.clients":
            continue
        value = getattr(getattr(defaults, section), name)
        toml = list(value) if isinstance(value, tuple) else value
        loaded = config_from_mapping({section: {name: toml}}, source=SOURCE)
        assert loaded == defaults, (section, name)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"server": {"port": 99999}}, "[server] port = 99999: expected 0..65535 (0 = any free"),
        ({"server": {"port": True}}, "[server] port = true: expected a whole number"),
        (
            {"issuer": {"validity_days": "365"}},
            '[issuer] validity_days = "365": expected a table',
        ),
        (
            {"issuer": {"validity_days": {"test": 1.5}}},
            "[issuer.validity_days] test = 1.5: expected a whole number",
        ),
        (
            {"issuer": {"validity_days": {"test": 0}}},
            "[issuer.validity_days] test = 0: expected 1..36500",
        ),
        ({"hsm": {"key_refresh_seconds": 0}}, "[hsm] key_refresh_seconds = 0.0: expected > 0"),
        ({"hsm": {"module": ""}}, '[hsm] module = "": expected a path'),
        ({"server": {"grace_seconds": float("nan")}}, "grace_seconds = nan: expected a finite"),
        ({"validation": {"min_dob": dt.date(1900, 1, 2)}}, '"1900-01-02": expected a string'),
        ({"validation": {"name_deny_list": ["A", 1]}}, "name_deny_list = 1: expected a string"),
        ({"officers": {"required_approvals": 1}}, "required_approvals = 1: expected ≥ 2"),
        ({"quotas": {"burst": 0}}, "[quotas] burst = 0: expected ≥ 1"),
        ({"ledger": {"checkpoint_records": 0}}, "[ledger] checkpoint_records = 0: expected ≥ 1"),
    ],
)
def test_the_issue_cases_name_the_file_key_value_and_expectation(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data, source=SOURCE)
    assert str(caught.value).startswith(f"{SOURCE}: ")
    assert message in str(caught.value)


def test_command_line_overrides_meet_the_same_rules() -> None:
    config = config_from_mapping({}, source=SOURCE)
    bad = dataclasses.replace(config, server=dataclasses.replace(config.server, port=70000))
    with pytest.raises(ConfigError, match=r"^command line: \[server\] port = 70000: expected"):
        config_checked(bad, "command line")
    sessions = dataclasses.replace(config, hsm=dataclasses.replace(config.hsm, sessions=-1))
    with pytest.raises(ConfigError, match=r"\[hsm\] sessions = -1: expected 0..256"):
        config_checked(sessions, "command line")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[server\n", "the config file is not valid TOML"),
        (b'[issuer]\ncountry = "\xff"\n', "is not UTF-8"),
    ],
)
def test_a_file_that_is_not_toml_is_a_config_error(
    tmp_path: Path, text: bytes, message: str
) -> None:
    path = tmp_path / "signer.toml"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
