"""``[tls]`` config, the listen-address rule, client identity, client TLS options, server
addresses and ``signer dev-tls`` (issue 7 §2). Handshakes: tests/integration/test_tls_handshake."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signer.cli import main
from signer.client import ClientTls, parse_server_address
from signer.config import TlsConfig, config_from_mapping
from signer.devtls import CLIENT_DNS_SUFFIX, CLIENT_URI_PREFIX, DevTls, write_dev_tls
from signer.errors import ConfigError
from signer.front.tls import (
    LOCAL_IDENTITY,
    check_listen_security,
    client_identity,
    server_credentials,
)

PLAIN = TlsConfig()
SERVER_ONLY = TlsConfig(cert="s.pem", key="s.key")
MUTUAL = TlsConfig(cert="s.pem", key="s.key", client_ca="ca.pem")


# --- [tls] config -------------------------------------------------------------------------


def test_tls_is_off_by_default_and_the_properties_say_what_is_on() -> None:
    config = config_from_mapping({})
    assert config.tls == PLAIN and not config.tls.enabled and not config.tls.mutual
    assert SERVER_ONLY.enabled and not SERVER_ONLY.mutual
    assert MUTUAL.enabled and MUTUAL.mutual
    loaded = config_from_mapping(
        {"tls": {"cert": "s.pem", "key": "s.key", "client_ca": "ca.pem", "identity": "san_uri"}}
    )
    assert loaded.tls == TlsConfig("s.pem", "s.key", "ca.pem", "san_uri")


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        ({"cert": "s.pem"}, "[tls] cert is set but key is not"),
        ({"key": "s.key"}, "[tls] key is set but cert is not"),
        ({"client_ca": "ca.pem"}, "[tls] client_ca is set without cert and key"),
        (
            {"cert": "s.pem", "key": "s.key", "identity": "email"},
            '[tls] identity = "email": expected one of "cn", "san_dns", "san_uri"',
        ),
        (
            {"certificate": "s.pem"},
            "[tls]: unknown key(s) certificate (known: cert, key, client_ca, identity)",
        ),
    ],
)
def test_tls_config_mistakes_are_refused(tls: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"tls": tls})
    assert message in str(caught.value)


def test_server_credentials_name_the_key_and_file_that_does_not_load(
    tmp_path: Path, dev_tls: DevTls
) -> None:
    missing = str(tmp_path / "missing.pem")
    other = write_dev_tls(tmp_path / "other", [])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    good = dev_tls.tls_config()
    cases = [
        (TlsConfig(cert=missing, key=good.key), f"[tls] cert: cannot read {missing}"),
        (TlsConfig(cert=good.cert, key=missing), f"[tls] key: cannot read {missing}"),
        (
            TlsConfig(good.cert, good.key, client_ca=missing),
            f"[tls] client_ca: cannot read {missing}",
        ),
        (TlsConfig(cert=str(garbage), key=good.key), "is not a PEM certificate chain"),
        (TlsConfig(good.cert, good.key, client_ca=str(garbage)), "is not a PEM certificate bundle"),
        (TlsConfig(cert=good.cert, key=str(garbage)), "is not an unencrypted PEM private key"),
        (
            TlsConfig(cert=good.cert, key=str(other.server_key)),
            f"[tls] key: {other.server_key} is not the private key of [tls] cert {good.cert}",
        ),
        (PLAIN, "[tls] cert and key are not set"),
    ]
    for tls, message in cases:
        with pytest.raises(ConfigError) as caught:
            server_credentials(tls)
        assert message in str(caught.value), tls


# --- where plaintext may listen -----------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "tls", "allowed"),
    [
        ("127.0.0.1", PLAIN, True),
        ("127.1.2.3", PLAIN, True),
        ("::1", PLAIN, True),
        ("[::1]", PLAIN, True),
        ("localhost", PLAIN, True),
        ("LOCALHOST", PLAIN, True),
        ("::ffff:127.0.0.1", PLAIN, True),
        ("0.0.0.0", PLAIN, False),
        ("::", PLAIN, False),
        ("[::]", PLAIN, False),
        ("10.0.0.5", PLAIN, False),
        ("192.168.1.1", PLAIN, False),
        ("signer.example.org", PLAIN, False),
        ("localhost.example.org", PLAIN, False),
        ("", PLAIN, False),
        ("0.0.0.0", SERVER_ONLY, False),  # TLS without client authentication is not enough
        ("10.0.0.5", SERVER_ONLY, False),
        ("0.0.0.0", MUTUAL, True),
        ("::", MUTUAL, True),
        ("signer.example.org", MUTUAL, True),
        ("127.0.0.1", MUTUAL, True),
    ],
)
def test_plaintext_listens_only_on_loopback(host: str, tls: TlsConfig, allowed: bool) -> None:
    if allowed:
        check_listen_security(host, tls)
        return
    with pytest.raises(ConfigError) as caught:
        check_listen_security(host, tls)
    assert "plaintext only on loopback; off loopback signer serve needs [tls] cert, key and " in (
        str(caught.value)
    )
    assert "client_ca (mutual TLS)" in str(caught.value)


# --- client identity ----------------------------------------------------------------------


def test_no_client_certificate_has_no_identity() -> None:
    assert LOCAL_IDENTITY == "local"
    for auth in (
        {},
        {"transport_security_type": [b"insecure"]},
        {"transport_security_type": [b"ssl"]},
    ):
        for mode in ("cn", "san_dns", "san_uri"):
            assert client_identity(auth, mode) is None


def test_identity_modes_read_the_certificate(dev_tls: DevTls) -> None:
    pem = dev_tls.clients["reader-b"].cert.read_bytes()
    auth = {"transport_security_type": [b"ssl"], "x509_pem_cert": [pem]}
    assert client_identity(auth, "cn") == "reader-b"
    assert client_identity(auth, "san_dns") == "reader-b" + CLIENT_DNS_SUFFIX
    assert client_identity(auth, "san_uri") == CLIENT_URI_PREFIX + "reader-b"
    with pytest.raises(ConfigError):
        client_identity(auth, "email")


def test_a_certificate_without_that_kind_of_name_has_no_identity(dev_tls: DevTls) -> None:
    auth = {"x509_pem_cert": [dev_tls.ca.read_bytes()]}  # CN, no SAN at all
    assert client_identity(auth, "cn") is not None
    assert client_identity(auth, "san_dns") is None
    assert client_identity(auth, "san_uri") is None
    assert client_identity({"x509_common_name": [b"legacy"]}, "cn") == "legacy"
    assert client_identity({"x509_common_name": [b"legacy"]}, "san_dns") is None


# --- client side --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        (" localhost:1 ", "localhost:1"),
        ("[::1]:50051", "[::1]:50051"),
        ("signer.example.org:443", "signer.example.org:443"),
    ],
)
def test_server_addresses(text: str, address: str) -> None:
    assert parse_server_address(text) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1", "has no port"),
        ("localhost", "has no port"),
        ("::1", "has no port"),
        ("[::1]", "has no port"),
        (":50051", "has no port"),
        ("127.0.0.1:", "the port must be a number"),
        ("127.0.0.1:http", "the port must be a number"),
        ("127.0.0.1:0", "the port must be a number"),
        ("127.0.0.1:65536", "the port must be a number"),
        ("[::1:50051", "in brackets"),
    ],
)
def test_server_addresses_without_a_usable_port_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_server_address(text)
    assert message in str(caught.value)


def test_client_tls_options(dev_tls: DevTls, tmp_path: Path) -> None:
    files = dev_tls.clients["issuer-a"]
    assert ClientTls.from_options(None, None, None) is None
    assert ClientTls.from_options(dev_tls.ca, None, None) == ClientTls(dev_tls.ca, None, None)
    for ca, cert, key, message in [
        (dev_tls.ca, files.cert, None, "--cert and --key go together"),
        (dev_tls.ca, None, files.key, "--cert and --key go together"),
        (None, files.cert, files.key, "--cert/--key need --ca"),
    ]:
        with pytest.raises(ConfigError) as caught:
            ClientTls.from_options(ca, cert, key)
        assert message in str(caught.value)
    ClientTls(dev_tls.ca, files.cert, files.key).credentials()  # loads

    missing = tmp_path / "missing.pem"
    foreign_key = dev_tls.clients["foreign"].key
    for tls, message in [
        (ClientTls(missing, None, None), f"--ca {missing}: cannot read it"),
        (ClientTls(dev_tls.ca, missing, files.key), f"--cert {missing}: cannot read it"),
        (ClientTls(dev_tls.ca, files.cert, missing), f"--key {missing}: cannot read it"),
        (ClientTls(dev_tls.ca, files.key, files.key), "is not a PEM certificate"),
        (ClientTls(dev_tls.ca, files.cert, files.cert), "is not an unencrypted PEM private key"),
        (ClientTls(dev_tls.ca, files.cert, foreign_key), "is not the private key of --cert"),
    ]:
        with pytest.raises(ConfigError) as caught:
            tls.credentials()
        assert message in str(caught.value)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["trust-list", "--server", "127.0.0.1", "--out", "x"], "has no port"),
        (["sign", "-", "--server", "127.0.0.1:1", "--cert", "c.pem"], "--cert and --key go"),
        (["reissue", "-", "--key", "k.pem", "--cert", "c.pem"], "--cert/--key need --ca"),
        (["verify", "-", "--server", "[::1]:1", "--ca", "/nonexistent/ca.pem"], "cannot read"),
    ],
)
def test_client_commands_refuse_bad_tls_options_and_addresses(
    argv: list[str], message: str
) -> None:
    code, out, err = _run(argv)
    assert code == 2 and message in err and out == ""


# --- signer dev-tls -----------------------------------------------------------------------


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_dev_tls_writes_a_ca_a_server_and_named_clients(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    before = dt.datetime.now(dt.UTC)
    code, printed, _ = _run(
        [
            "dev-tls",
            "--out",
            str(out),
            "--client",
            "issuer-a",
            "--client",
            "reader-b",
            "--days",
            "7",
        ]
    )
    assert code == 0
    ca = _certificate(out / "ca.pem")
    server = _certificate(out / "server.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    server.verify_directly_issued_by(ca)
    assert server.not_valid_after_utc - before < dt.timedelta(days=7, minutes=1)
    assert server.not_valid_after_utc - before > dt.timedelta(days=6)
    for name in ("issuer-a", "reader-b"):
        client = _certificate(out / "clients" / f"{name}.pem")
        client.verify_directly_issued_by(ca)
        assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
            ExtendedKeyUsageOID.CLIENT_AUTH
        ]
        public_key = client.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        assert public_key.curve.name == "secp256r1"
        assert f"--cert {out / 'clients' / f'{name}.pem'}" in printed
    for key in (out / "ca.key", out / "server.key", *(out / "clients").glob("*.key")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert "NOT FOR PRODUCTION" in printed
    assert f'client_ca = "{out / "ca.pem"}"' in printed and "[tls]" in printed

    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        main(["dev-tls", "--help"])
    assert "NOT FOR PRODUCTION" in help_text.getvalue()


def test_dev_tls_keeps_its_ca_makes_expired_clients_and_other_cas(tmp_path: Path) -> None:
    first = write_dev_tls(tmp_path / "a", ["one"])
    ca_pem = first.ca.read_bytes()
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    expired = write_dev_tls(tmp_path / "a", ["old"], client_not_after=yesterday)
    assert expired.ca.read_bytes() == ca_pem  # same CA, so only expiry can refuse it
    old = _certificate(expired.clients["old"].cert)
    old.verify_directly_issued_by(_certificate(first.ca))
    assert old.not_valid_after_utc <= yesterday + dt.timedelta(seconds=1)
    assert old.not_valid_before_utc < old.not_valid_after_utc
    assert _certificate(expired.server_cert).not_valid_after_utc > dt.datetime.now(dt.UTC)

    other = write_dev_tls(tmp_path / "b", ["x"])
    assert other.ca.read_bytes() != ca_pem
    with pytest.raises(InvalidSignature):  # same subject, another key
        _certificate(other.clients["x"].cert).verify_directly_issued_by(_certificate(first.ca))
    for bad in ("", "../up", "a b", "x" * 64):
        with pytest.raises(ConfigError):
            write_dev_tls(tmp_path / "c", [bad])
    with pytest.raises(ConfigError):
        write_dev_tls(tmp_path / "c", [], days=0)


def test_serve_refuses_plaintext_off_loopback(tmp_path: Path) -> None:
    """Off loopback, signer serve starts only with mutual TLS: refused before anything runs."""
    config = tmp_path / "signer.toml"
    config.write_text(f'[dev]\nbootstrap = true\ndirectory = "{tmp_path / "dev"}"\n')
    code, _, err = _run(["serve", "--config", str(config), "--host", "0.0.0.0", "--port", "0"])
    assert code == 2 and "plaintext only on loopback" in err, err
    assert not (tmp_path / "dev").exists()
    with_tls = ["--tls-cert", "s.pem", "--tls-key", "s.key"]
    code, _, err = _run(["serve", "--config", str(config), "--host", "0.0.0.0", *with_tls])
    assert code == 2 and "client_ca" in err, err
