"""TLS and mutual TLS on the gRPC port (issue 7 §2), with grpcio's own credentials.

Three decisions live here and nowhere else: the server's credentials (re-read from disk when
the files change, so a renewed certificate or client CA needs no restart), the name a client
certificate gives its caller, and whether a listen address may serve without mutual TLS.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from signer.config import IDENTITY_MODES, TlsConfig
from signer.errors import ConfigError

LOCAL_IDENTITY = "local"
"""The identity of a plaintext caller; plaintext is served only on loopback
(:func:`check_listen_security`), so such a caller runs on this machine."""

_log = logging.getLogger(__name__)

_LISTEN_REFUSED = (
    "plaintext only on loopback; off loopback signer serve needs [tls] cert, key and client_ca "
    "(mutual TLS)"
)


def check_listen_security(host: str, tls: TlsConfig) -> None:
    """Refuse to listen on ``host`` unless it is a loopback address or mutual TLS is configured.

    Issue 7: anyone who reached the plaintext port could sign. ``0.0.0.0`` and ``::`` listen on
    every interface, so they are not loopback."""
    if tls.mutual or _is_loopback(host):
        return
    raise ConfigError(f"cannot listen on {host!r}: {_LISTEN_REFUSED}")


def _is_loopback(host: str) -> bool:
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # another host name: it may resolve to anything
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@dataclass(frozen=True, slots=True)
class _Stamp:
    """What identifies one version of a file on disk, cheap to read on every handshake."""

    inode: int
    size: int
    mtime_ns: int


def _stamp(path: str) -> _Stamp:
    st = os.stat(path)
    return _Stamp(st.st_ino, st.st_size, st.st_mtime_ns)


def _read(tls: TlsConfig, key: str) -> bytes:
    path = getattr(tls, key)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"[tls] {key}: cannot read {path}: {e.strerror}") from e


def _load_configuration(tls: TlsConfig) -> grpc.ServerCertificateConfiguration:
    """Read and check the PEM files: a certificate that does not match its key, or a file that is
    not PEM, is refused here with a message instead of failing every handshake later."""
    cert_pem, key_pem = _read(tls, "cert"), _read(tls, "key")
    try:
        certificate = x509.load_pem_x509_certificates(cert_pem)[0]
    except ValueError as e:
        raise ConfigError(f"[tls] cert: {tls.cert} is not a PEM certificate chain") from e
    try:
        private_key: PrivateKeyTypes = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"[tls] key: {tls.key} is not an unencrypted PEM private key") from e
    if private_key.public_key() != certificate.public_key():
        raise ConfigError(f"[tls] key: {tls.key} is not the private key of [tls] cert {tls.cert}")
    client_ca = None
    if tls.client_ca:
        client_ca = _read(tls, "client_ca")
        try:
            x509.load_pem_x509_certificates(client_ca)
        except ValueError as e:
            raise ConfigError(
                f"[tls] client_ca: {tls.client_ca} is not a PEM certificate bundle"
            ) from e
    return grpc.ssl_server_certificate_configuration(
        [(key_pem, cert_pem)], root_certificates=client_ca
    )


class _Reloader:
    """The ``certificate_configuration_fetcher``: grpc calls it before every TLS handshake.

    It compares the files' stat stamps with those of the configuration in use and re-reads
    them only when one changed. A change that does not load (a certificate replaced before its
    key) keeps the configuration in use and is logged once; the next handshake tries again.
    Connections already open keep their session, so calls in flight are not dropped."""

    def __init__(self, tls: TlsConfig) -> None:
        self._tls = tls
        self._paths = tuple(p for p in (tls.cert, tls.key, tls.client_ca) if p)
        self._lock = threading.Lock()
        self._current = self._stamps_or_none()
        self.initial = _load_configuration(tls)
        self._failed: tuple[_Stamp, ...] | None = None

    def _stamps_or_none(self) -> tuple[_Stamp, ...] | None:
        try:
            return tuple(_stamp(p) for p in self._paths)
        except OSError:
            return None

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        stamps = self._stamps_or_none()
        with self._lock:
            if stamps is None or stamps == self._current:
                return None  # unchanged, or a file is being replaced right now
            try:
                configuration = _load_configuration(self._tls)
            except ConfigError as e:
                if stamps != self._failed:
                    self._failed = stamps
                    _log.warning("TLS files changed but do not load, keeping the old ones: %s", e)
                return None
            self._current = stamps
            _log.info("TLS certificate and client CA re-read from %s", ", ".join(self._paths))
            return configuration


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """grpc server credentials for ``[tls]``; with ``client_ca`` every client must present a
    certificate that chains to it (refused at the handshake otherwise). Raises ConfigError
    naming the key and file when a file is unreadable or does not fit."""
    if not tls.enabled:
        raise ConfigError("[tls] cert and key are not set")
    reloader = _Reloader(tls)
    return grpc.dynamic_ssl_server_credentials(
        reloader.initial,
        reloader,
        require_client_authentication=tls.mutual,
    )


def client_identity(auth_context: Mapping[str, Sequence[bytes]], mode: str) -> str | None:
    """The caller's name from ``context.auth_context()``: its certificate's subject CN
    (``cn``), first DNS SAN (``san_dns``) or first URI SAN (``san_uri``).

    None when the caller presented no certificate (plaintext, or TLS without client auth) or
    its certificate has no name of that kind: the caller then has no identity, and the front
    must not give it one (a plaintext caller is :data:`LOCAL_IDENTITY`)."""
    if mode not in IDENTITY_MODES:
        raise ConfigError(f"[tls] identity must be one of {', '.join(IDENTITY_MODES)}")
    pems = auth_context.get("x509_pem_cert")
    if pems:
        return _name_in_certificate(bytes(pems[0]), mode)
    if mode == "cn":  # grpc filled in the CN but not the PEM (older cores)
        names = auth_context.get("x509_common_name")
        return bytes(names[0]).decode() if names else None
    return None


@functools.lru_cache(maxsize=256)
def _name_in_certificate(pem: bytes, mode: str) -> str | None:
    """Cached: a client sends the same certificate on every call of a connection."""
    certificate = x509.load_pem_x509_certificate(pem)
    if mode == "cn":
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = names[0].value if names else None
        return value if isinstance(value, str) else None
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    kind = x509.DNSName if mode == "san_dns" else x509.UniformResourceIdentifier
    values = san.get_values_for_type(kind)
    return values[0] if values else None
