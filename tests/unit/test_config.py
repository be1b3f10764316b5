"""Configuration: embedded defaults, TOML overrides, and PINs that never come from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.config import (
    ClientLimits,
    Config,
    HsmConfig,
    config_from_mapping,
    dev_defaults,
    load_config,
)
from signer.domain import CertType
from signer.errors import ConfigError


def test_embedded_defaults_are_the_dev_appliance() -> None:
    config = load_config(None)
    assert config.dev.bootstrap
    assert config.server.host == "127.0.0.1" and config.server.max_batch == 1000
    assert all(config.issuer.validity_seconds(t) == 365 * 86400 for t in CertType)


def test_toml_overrides_and_partial_validity_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[hsm]\nsessions = 3\n[issuer.validity_days]\ntest = 3\n[dev]\nbootstrap = false\n"
    )
    config = load_config(path)
    assert config.hsm.session_count() == 3
    assert config.issuer.validity_seconds(CertType.TEST) == 3 * 86400
    assert config.issuer.validity_seconds(CertType.VACCINATION) == 365 * 86400
    assert not config.dev.bootstrap


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hsm": {"pin": "1234"}}, "PINs never go in the config file"),
        ({"hsm": {"user_pin": "1234"}}, "PINs never go in the config file"),
        ({"server": {"prot": 1}}, "unknown key"),
        ({"nonsense": {}}, "unknown section"),
        ({"hsm": {"sessions": "two"}}, "must be int"),
        ({"server": {"max_batch": 0}}, "max_batch"),
        ({"issuer": {"validity_days": {"booster": 10}}}, "unknown type"),
        ({"issuer": {"country": "Vietnam"}}, "alpha-2"),
        ({"dev": {"key_algorithms": ["ES512"]}}, "unknown"),
        ({"policy": {"default": "admin"}}, r"\[policy\] default: unknown role 'admin'"),
        ({"policy": {"colour": "red"}}, r"unknown key\(s\) in \[policy\]: colour"),
        ({"policy": {"clients": {"name": "a"}}}, r"\[\[policy.clients\]\] tables"),
        ({"policy": {"clients": [{"roles": ["issuer"]}]}}, r"#1: name must be"),
        ({"policy": {"clients": [{"name": "a", "roles": []}]}}, "'a': roles must be a non-empty"),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["admin"]}]}},
            r"roles: unknown \['admin'\]",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "types": ["booster"]}]}},
            r"'a': types: unknown \['booster'\]",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "types": []}]}},
            "types must be a non-empty list",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "rate": 5}]}},
            r"#1: unknown key\(s\): rate",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["none"]}] * 2}},
            "'a': the same name appears twice",
        ),
        ({"policy": {"clients": [{"name": "other", "roles": ["none"]}]}}, '"other" is reserved'),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "burst": "10"}]}},
            "'a': burst must be int",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "items_per_second": 0}]}},
            "'a': items_per_second must be a finite number > 0",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "burst": 999}]}},
            r"'a': burst \(999\) must be ≥ \[server\] max_batch \(1000\)",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "items_per_day": 10}]}},
            r"'a': items_per_day \(10\) must be ≥ \[server\] max_batch",
        ),
        ({"quotas": {"max_in_flight_items": 10}}, r"\[quotas\]: max_in_flight_items \(10\)"),
        ({"quotas": {"items_per_day": -1}}, r"\[quotas\]: items_per_day must be ≥ 0"),
        ({"quotas": {"items_per_second": float("inf")}}, "finite number"),
        ({"quotas": {"total_in_flight_items": 999}}, "total_in_flight_items must be ≥"),
        ({"quotas": {"burst": 1.5}}, "must be int"),
    ],
)
def test_bad_config_is_refused_with_a_reason(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(data)


def test_policy_clients_parse_with_defaults_from_quotas() -> None:
    config = config_from_mapping(
        {
            "server": {"max_batch": 100},
            "policy": {
                "default": "none",
                "clients": [
                    {"name": "his", "roles": ["issuer"], "types": ["test", "test"], "burst": 100},
                    {"name": "reader", "roles": ["reader"]},
                ],
            },
            "quotas": {"items_per_second": 50, "items_per_day": 100},
        }
    )
    his, reader = config.policy.clients
    assert config.policy.default == "none"
    assert his.types == (CertType.TEST,) and his.roles == ("issuer",)
    assert his.limits(config.quotas) == ClientLimits(50.0, 100, 100, 10000)
    assert reader.types == tuple(CertType)
    assert reader.limits(config.quotas) == config.quotas.limits()


def test_pin_from_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text("from-file\n")
    config = Config(hsm=HsmConfig(pin_env="TEST_SIGNER_PIN", pin_file=str(pin_file)))
    monkeypatch.setenv("TEST_SIGNER_PIN", "from-env")
    assert config.read_pin() == "from-env"
    monkeypatch.delenv("TEST_SIGNER_PIN")
    assert config.read_pin() == "from-file"


def test_missing_pin_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_SIGNER_PIN", raising=False)
    config = config_from_mapping(
        {"hsm": {"pin_env": "TEST_SIGNER_PIN"}, "dev": {"bootstrap": False}}
    )
    with pytest.raises(ConfigError, match="TEST_SIGNER_PIN"):
        config.read_pin()


def test_shipped_configs_load_and_dev_toml_spells_out_the_defaults() -> None:
    root = Path(__file__).resolve().parents[2] / "config"
    assert load_config(root / "dev.toml") == dev_defaults()
    production = load_config(root / "example.toml")
    assert not production.dev.bootstrap and production.hsm.module != "softhsm"
    assert production.policy.default == "none" and len(production.policy.clients) == 2


@pytest.mark.parametrize(
    ("text", "bootstrap"),
    [
        (None, True),  # no file: the dev appliance
        ("[server]\nport = 1\n", False),  # a file without [dev] never bootstraps
        ("[dev]\nbootstrap = true\n", True),
        ('[dev]\ndirectory = "x"\n', False),
    ],
)
def test_dev_bootstrap_runs_only_when_asked(
    tmp_path: Path, text: str | None, bootstrap: bool
) -> None:
    path = None
    if text is not None:
        path = tmp_path / "signer.toml"
        path.write_text(text)
    assert load_config(path).dev.bootstrap is bootstrap


def test_dev_bootstrap_is_refused_on_a_vendor_module() -> None:
    with pytest.raises(ConfigError, match="only on SoftHSM"):
        config_from_mapping(
            {"hsm": {"module": "/usr/lib/vendor/libvendor.so"}, "dev": {"bootstrap": True}}
        )
    softhsm = {"module": "/usr/lib/softhsm/libsofthsm2.so"}
    assert config_from_mapping({"hsm": softhsm, "dev": {"bootstrap": True}}).dev.bootstrap
