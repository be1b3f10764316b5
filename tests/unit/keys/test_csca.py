"""``[issuer] csca``: the CSCAs every DSC must chain to (issue 8) — the config key, its files, and
the one chain check that ``import-cert`` and the servers share."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signer.config import config_from_mapping, dev_defaults, load_config
from signer.errors import ConfigError
from signer.keys.certcheck import chain_problems
from signer.keys.csca import load_cscas
from signer.keys.devca import DevCsca

NOW = dt.datetime.now(dt.UTC)
PEM = serialization.Encoding.PEM


def _dsc(csca: DevCsca, days: int = 30, start: dt.datetime = NOW) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return csca.issue_dsc(
        der, "DSC", "VN", start - dt.timedelta(hours=1), start + dt.timedelta(days=days)
    )


def _config(*paths: Path) -> dict[str, dict[str, object]]:
    return {"issuer": {"csca": [str(p) for p in paths]}}


def test_a_production_config_without_csca_is_refused_where_it_is_needed() -> None:
    config = config_from_mapping({"dev": {"bootstrap": False}})
    with pytest.raises(ConfigError, match=r"\[issuer\] csca is not set"):
        config.csca_paths  # noqa: B018


def test_the_dev_appliance_uses_the_dev_csca_and_example_toml_names_one() -> None:
    assert dev_defaults().csca_paths == (dev_defaults().dev_dir / "dev-csca.pem",)
    example = load_config(Path(__file__).resolve().parents[3] / "config" / "example.toml")
    assert example.csca_paths == (Path("/etc/hcert-signer/csca.pem"),)


@pytest.mark.parametrize("value", ["csca.pem", [""], [1]])
def test_csca_must_be_a_list_of_paths(value: object) -> None:
    with pytest.raises(ConfigError, match=r"\[issuer\] csca"):
        config_from_mapping({"issuer": {"csca": value}})


def test_one_file_may_hold_several_cscas_and_files_add_up(tmp_path: Path) -> None:
    a, b, c = (DevCsca.load_or_create(tmp_path / n, "VN") for n in "abc")
    both = tmp_path / "ab.pem"
    both.write_bytes(a.certificate.public_bytes(PEM) + b.certificate.public_bytes(PEM))
    config = config_from_mapping(_config(both, tmp_path / "c" / "dev-csca.pem"))
    assert load_cscas(config) == (a.certificate, b.certificate, c.certificate)


def test_unreadable_non_pem_and_non_ca_files_are_named(tmp_path: Path) -> None:
    csca = DevCsca.load_or_create(tmp_path / "ca", "VN")
    missing, garbage, leaf = (
        tmp_path / "missing.pem",
        tmp_path / "garbage.pem",
        tmp_path / "dsc.pem",
    )
    garbage.write_text("not a certificate")
    leaf.write_bytes(_dsc(csca).public_bytes(PEM))
    for path, message in (
        (missing, "cannot read it"),
        (garbage, "not PEM certificates"),
        (leaf, ".*CN=DSC is not a CA certificate"),
    ):
        with pytest.raises(ConfigError, match=rf"\[issuer\] csca: {path}: {message}"):
            load_cscas(config_from_mapping(_config(path)))


def test_chain_problems_accepts_a_dsc_of_any_configured_csca(tmp_path: Path) -> None:
    ours, other = (
        DevCsca.load_or_create(tmp_path / "a", "VN"),
        DevCsca.load_or_create(tmp_path / "b", "VN"),
    )
    dsc = _dsc(ours)
    assert chain_problems(dsc, [ours.certificate]) == []
    assert chain_problems(dsc, [other.certificate, ours.certificate]) == []
    (only,) = chain_problems(dsc, [other.certificate])
    assert "not issued by CSCA" in only
    (both,) = chain_problems(_dsc(other), [ours.certificate, ours.certificate])
    assert "chains to none of the 2 CSCAs" in both
    assert chain_problems(dsc, []) == ["no CSCA to check it against ([issuer] csca)"]


def test_a_dsc_outliving_its_csca_does_not_chain(tmp_path: Path) -> None:
    csca = DevCsca.load_or_create(tmp_path, "VN")  # valid four years
    (problem,) = chain_problems(_dsc(csca, days=5 * 365), [csca.certificate])
    assert "outside the validity of CSCA" in problem
    early = _dsc(csca, start=csca.certificate.not_valid_before_utc - dt.timedelta(days=2))
    assert "outside the validity" in chain_problems(early, [csca.certificate])[0]


def test_a_forged_issuer_name_does_not_chain(tmp_path: Path) -> None:
    """A throw-away CA with our CSCA's name and SKI: the signature still gives it away."""
    ours = DevCsca.load_or_create(tmp_path / "ours", "VN")
    key = ec.generate_private_key(ec.SECP256R1())
    ski = ours.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    twin_certificate = (
        x509.CertificateBuilder()
        .subject_name(ours.certificate.subject)
        .issuer_name(ours.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ours.certificate.not_valid_before_utc)
        .not_valid_after(ours.certificate.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    twin = DevCsca(key, twin_certificate)
    (problem,) = chain_problems(_dsc(twin), [ours.certificate])
    assert "not issued by CSCA" in problem and "InvalidSignature" in problem
