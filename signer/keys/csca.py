"""The CSCA certificates every DSC must chain to (issue 8): ``[issuer] csca``.

Read by the front at start (a missing or wrong file stops it there, with the file named), by
every signing worker for its key registry, and by ``signer keys import-cert``. A file may hold
several PEM certificates (e.g. the current CSCA and the one it is rolling over from).
"""

from __future__ import annotations

from cryptography import x509

from signer.config import Config
from signer.errors import ConfigError


def load_cscas(config: Config) -> tuple[x509.Certificate, ...]:
    """Every certificate of every ``[issuer] csca`` file; ConfigError naming the file and key
    when one cannot be read, holds no PEM certificate, or holds one that is not a CA."""
    found: list[x509.Certificate] = []
    for path in config.csca_paths:
        where = f"[issuer] csca: {path}"
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"{where}: cannot read it ({e.strerror})") from e
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise ConfigError(f"{where}: not PEM certificates ({e})") from e
        for certificate in certificates:
            if not _is_ca(certificate):
                raise ConfigError(
                    f"{where}: {certificate.subject.rfc4514_string()} is not a CA certificate "
                    "(basicConstraints cA); give the CSCA, not a DSC"
                )
        found.extend(certificates)
    return tuple(found)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
