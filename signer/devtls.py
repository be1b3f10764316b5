"""Development TLS files (``signer dev-tls``): a throw-away CA, a server certificate for this
machine and client certificates for named clients. NOT FOR PRODUCTION: the CA key is a file.

Production certificates come from the operator's PKI; these exist so that mutual TLS can be
tried and tested on one machine (issue 7 §2).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signer.client import ClientTls
from signer.config import TlsConfig
from signer.errors import ConfigError

NOT_FOR_PRODUCTION = "NOT FOR PRODUCTION"
CA_VALIDITY = dt.timedelta(days=5 * 365)
CLIENT_DNS_SUFFIX = ".clients.hcert-signer.test"  # a client's DNS SAN: NAME + this suffix
CLIENT_URI_PREFIX = "urn:hcert-signer:client:"  # a client's URI SAN: this prefix + NAME
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_SERVER_NAMES: tuple[x509.GeneralName, ...] = (
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.IPAddress(ipaddress.ip_address("::1")),
    x509.DNSName("localhost"),
)


@dataclass(frozen=True, slots=True)
class ClientFiles:
    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class DevTls:
    """The files :func:`write_dev_tls` wrote (``clients``: those of this call, by name)."""

    directory: Path
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: Mapping[str, ClientFiles] = field(default_factory=lambda: MappingProxyType({}))

    def tls_config(self, mutual: bool = True, identity: str = "cn") -> TlsConfig:
        """The ``[tls]`` section serving with these files."""
        return TlsConfig(
            cert=str(self.server_cert),
            key=str(self.server_key),
            client_ca=str(self.ca) if mutual else "",
            identity=identity,
        )

    def client_tls(self, name: str | None = None) -> ClientTls:
        """Client options trusting this CA, with the certificate of client ``name`` if given."""
        files = self.clients[name] if name is not None else None
        return ClientTls(
            ca=self.ca, cert=files.cert if files else None, key=files.key if files else None
        )


def write_dev_tls(
    directory: Path,
    clients: Sequence[str],
    days: int = 30,
    now: dt.datetime | None = None,
    *,
    client_not_after: dt.datetime | None = None,
) -> DevTls:
    """Write a dev CA (kept when ``ca.pem``/``ca.key`` exist), a fresh server certificate for
    127.0.0.1, ::1 and localhost, and one certificate per client name under ``clients/``.

    Certificates start at ``now`` (default: the current time) less an hour and last ``days``;
    ``client_not_after`` ends the client certificates earlier, e.g. in the past for a test of an
    expired certificate. Calling this on two directories gives two unrelated CAs. Keys are
    ECDSA P-256, written with mode 0600."""
    if days < 1:
        raise ConfigError("--days must be ≥ 1")
    for name in clients:
        if not _CLIENT_NAME.fullmatch(name):
            raise ConfigError(
                f"client name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)"
            )
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=1)
    end = start + dt.timedelta(days=days)
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, ca_key_path = directory / "ca.pem", directory / "ca.key"
    ca_key, ca = _load_or_create_ca(ca_path, ca_key_path, start)

    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        ca_key,
        ca,
        server_key,
        _name("hcert-signer dev server"),
        start,
        end,
        list(_SERVER_NAMES),
        ExtendedKeyUsageOID.SERVER_AUTH,
    )
    server_cert_path, server_key_path = directory / "server.pem", directory / "server.key"
    server_cert_path.write_bytes(_pem(server))
    _write_key(server_key_path, server_key)

    written: dict[str, ClientFiles] = {}
    for name in clients:
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = client_not_after or end
        certificate = _issue(
            ca_key,
            ca,
            key,
            _name(name),
            min(start, not_after - dt.timedelta(days=1)),
            not_after,
            [
                x509.DNSName(name + CLIENT_DNS_SUFFIX),
                x509.UniformResourceIdentifier(CLIENT_URI_PREFIX + name),
            ],
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        files = ClientFiles(
            directory / "clients" / f"{name}.pem", directory / "clients" / f"{name}.key"
        )
        files.cert.parent.mkdir(exist_ok=True)
        files.cert.write_bytes(_pem(certificate))
        _write_key(files.key, key)
        written[name] = files
    return DevTls(
        directory=directory,
        ca=ca_path,
        ca_key=ca_key_path,
        server_cert=server_cert_path,
        server_key=server_key_path,
        clients=MappingProxyType(written),
    )


def describe(result: DevTls) -> str:
    """What ``signer dev-tls`` prints: the files, the ``[tls]`` section and client options."""
    lines = [f"development TLS files ({NOT_FOR_PRODUCTION}):"]
    lines += [f"  {p}" for p in (result.ca, result.ca_key, result.server_cert, result.server_key)]
    for files in result.clients.values():
        lines += [f"  {files.cert}", f"  {files.key}"]
    lines += [
        "",
        "server config:",
        "[tls]",
        f'cert = "{result.server_cert}"',
        f'key = "{result.server_key}"',
        f'client_ca = "{result.ca}"',
        'identity = "cn"',
    ]
    for name, files in result.clients.items():
        lines += [
            "",
            f"client {name}:",
            f"  --ca {result.ca} --cert {files.cert} --key {files.key}",
        ]
    return "\n".join(lines)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"hcert-signer dev {NOT_FOR_PRODUCTION}"),
        ]
    )


def _load_or_create_ca(
    cert_path: Path, key_path: Path, start: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{key_path} is not an EC private key")
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"hcert-signer dev TLS CA {NOT_FOR_PRODUCTION}")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(_pem(certificate))
    _write_key(key_path, key)
    return key, certificate


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    not_before: dt.datetime,
    not_after: dt.datetime,
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """A private key, readable by its owner only (0600 even when the file existed)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)
