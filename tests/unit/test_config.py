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
        (
            {"server": {"prot": 1}},
            r"\[server\]: unknown key\(s\) prot \(known: host, port, metrics_host",
        ),
        ({"nonsense": {}}, "unknown section"),
        (
            {"hsm": {"sessions": "two"}},
            r'^config: \[hsm\] sessions = "two": expected a whole number$',
        ),
        ({"server": {"max_batch": 0}}, "max_batch"),
        (
            {"issuer": {"validity_days": {"booster": 10}}},
            r'\[issuer.validity_days\] booster: unknown key; expected one of "vaccination"',
        ),
        ({"issuer": {"country": "Vietnam"}}, "alpha-2"),
        (
            {"dev": {"key_algorithms": ["ES256", "ES512"]}},
            r'\[dev\] key_algorithms = "ES512": expected one of "ES256", "PS256"',
        ),
        ({"policy": {"default": "admin"}}, r"\[policy\] default: unknown role 'admin'"),
        ({"policy": {"colour": "red"}}, r"\[policy\]: unknown key\(s\) colour"),
        ({"policy": {"clients": {"name": "a"}}}, r"\[policy\] clients = .*: expected an array"),
        ({"policy": {"clients": [{"roles": ["issuer"]}]}}, r"#1: missing key\(s\) name"),
        (
            {"policy": {"clients": [{"name": "a", "roles": []}]}},
            r'#1 \("a"\) roles = \[\]: expected at least one role',
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["admin"]}]}},
            r"roles: unknown \['admin'\]",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "types": ["booster"]}]}},
            r'#1 \("a"\) types = "booster": expected one of "vaccination"',
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "types": []}]}},
            r"types = \[\]: expected at least one certificate type",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "rate": 5}]}},
            r"#1 \(\"a\"\): unknown key\(s\) rate \(known: name, roles",
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["none"]}] * 2}},
            "'a': the same name appears twice",
        ),
        ({"policy": {"clients": [{"name": "other", "roles": ["none"]}]}}, '"other" is reserved'),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "burst": "10"}]}},
            r'#1 \("a"\) burst = "10": expected a whole number',
        ),
        (
            {"policy": {"clients": [{"name": "a", "roles": ["issuer"], "items_per_second": 0}]}},
            r'#1 \("a"\) items_per_second = 0.0: expected > 0',
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
        ({"quotas": {"items_per_day": -1}}, r"\[quotas\] items_per_day = -1: expected ≥ 0"),
        (
            {"quotas": {"items_per_second": float("inf")}},
            "items_per_second = inf: expected a finite",
        ),
        ({"quotas": {"total_in_flight_items": 999}}, "total_in_flight_items must be ≥"),
        ({"quotas": {"burst": 1.5}}, r"\[quotas\] burst = 1.5: expected a whole number"),
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
