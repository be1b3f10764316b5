"""Configuration: frozen dataclasses, embedded defaults, optional TOML file.

The embedded defaults are the development appliance (``make run``): a SoftHSM token under
``.dev/``, created with a dev CSCA and DSC on first run. A production config (see
``config/example.toml``) names the vendor PKCS#11 module and turns the dev bootstrap off.
PINs never live here: the config names an environment variable and/or a file to read them from.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from signer.domain import CertType
from signer.errors import ConfigError
from signer.hcert.validation import IMPLEMENTED_VERSIONS, ValidationPolicy

DEFAULT_VALIDITY_DAYS = 365  # issue 2 §4: exp = iat + 365 days unless configured per type


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    workers: int = 0  # 0 = one per core
    max_batch: int = 1000
    max_payload_bytes: int = 16384
    stream_window: int = 2  # batches of one stream in flight per worker

    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class HsmConfig:
    module: str = "softhsm"  # path to the PKCS#11 module; "softhsm" finds libsofthsm2.so
    token_label: str = "hcert-dev"  # noqa: S105 - a label, not a secret
    pin_env: str = "HCERT_SIGNER_PIN"
    pin_file: str = ""
    key_refresh_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    country: str = "VN"
    key_usage_days: int = 183  # GOV §3.2: private-key usage ~6 months (metric when no PKUP ext)
    validity_days: dict[str, int] = field(
        default_factory=lambda: {t.value: DEFAULT_VALIDITY_DAYS for t in CertType}
    )

    def validity_seconds(self, cert_type: CertType) -> int:
        return self.validity_days.get(cert_type.value, DEFAULT_VALIDITY_DAYS) * 86400


@dataclass(frozen=True, slots=True)
class ValidationConfig:
    """Payload validation policy (issue 3); see :class:`ValidationPolicy` for each field."""

    deprecated_codes: str = "warn"  # "warn" or "refuse"
    derive_transliteration: bool = True
    clock_skew_seconds: int = 300
    require_uvci_checksum: bool = False
    uvci_country: str = ""  # "" = any country; e.g. "VN"
    min_dob: str = "1900-01-02"
    name_deny_list: tuple[str, ...] = ()
    supported_versions: tuple[str, ...] = IMPLEMENTED_VERSIONS

    def policy(self) -> ValidationPolicy:
        return ValidationPolicy(
            deprecated_codes="refuse" if self.deprecated_codes == "refuse" else "warn",
            derive_transliteration=self.derive_transliteration,
            clock_skew_seconds=self.clock_skew_seconds,
            require_uvci_checksum=self.require_uvci_checksum,
            uvci_country=self.uvci_country or None,
            min_dob=self.min_dob,
            name_deny_list=self.name_deny_list,
            supported_versions=self.supported_versions,
        )


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    trust_dir: str = ""  # directory of foreign DSC PEMs the Verify RPC also trusts


@dataclass(frozen=True, slots=True)
class HashOnlyConfig:
    """Hash-only signing signs whatever digest a client sends: no validation can run. Off by
    default; enable it only for clients trusted to validate their own payloads."""

    enabled: bool = False


@dataclass(frozen=True, slots=True)
class OfficersConfig:
    """Dual control of key management (issue 4, docs/adr/0005-key-management-and-dual-control.md).

    ``directory`` holds the officers' Ed25519 public keys as ``<name>.pub.pem``, deployed by
    operations; "" means ``<dev directory>/officers`` in a dev config (the two dev officers)."""

    directory: str = ""
    required_approvals: int = 2
    proposal_hours: float = 24.0  # a proposal not approved within this time expires


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """The key-management audit trail (JSON lines, SHA-256 hash chain); "" = ``<dev>/audit.jsonl``
    in a dev config."""

    path: str = ""


IDENTITY_MODES = ("cn", "san_dns", "san_uri")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS on the gRPC port (issue 7 §2): PEM files for the server certificate chain and key,
    and the CA that client certificates must chain to (mutual TLS). All empty = plaintext,
    allowed only on a loopback address. The files are re-read when they change on disk, so a
    renewed certificate or CA needs no restart. ``identity`` names a client by its
    certificate's subject CN (``cn``), first DNS SAN (``san_dns``) or first URI SAN
    (``san_uri``)."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""
    identity: str = "cn"

    @property
    def enabled(self) -> bool:
        return bool(self.cert and self.key)

    @property
    def mutual(self) -> bool:
        """Clients must present a certificate that chains to ``client_ca``."""
        return self.enabled and bool(self.client_ca)


@dataclass(frozen=True, slots=True)
class DevConfig:
    """Development bootstrap. Never enable in production: the CSCA key sits in a file."""

    bootstrap: bool = True
    directory: str = ".dev"
    key_algorithms: tuple[str, ...] = ("ES256",)


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    hsm: HsmConfig = field(default_factory=HsmConfig)
    issuer: IssuerConfig = field(default_factory=IssuerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    hash_only: HashOnlyConfig = field(default_factory=HashOnlyConfig)
    officers: OfficersConfig = field(default_factory=OfficersConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    dev: DevConfig = field(default_factory=DevConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)

    @property
    def dev_dir(self) -> Path:
        return Path(self.dev.directory).resolve()

    @property
    def softhsm_dir(self) -> Path:
        return self.dev_dir / "softhsm"

    @property
    def dev_pin_file(self) -> Path:
        return self.dev_dir / "user.pin"

    @property
    def officers_dir(self) -> Path:
        """The officer roster directory; in a dev config by default the dev officers'."""
        if self.officers.directory:
            return Path(self.officers.directory).resolve()
        if self.dev.bootstrap:
            return self.dev_dir / "officers"
        raise ConfigError(
            "[officers] directory is not set: name the directory of security officers' public "
            "keys (<name>.pub.pem) that approve key operations"
        )

    @property
    def audit_path(self) -> Path:
        if self.audit.path:
            return Path(self.audit.path).resolve()
        if self.dev.bootstrap:
            return self.dev_dir / "audit.jsonl"
        raise ConfigError("[audit] path is not set: name the key-management audit trail file")

    def read_pin(self) -> str:
        """The user PIN from the env var named in the config, else from the PIN file."""
        pin = os.environ.get(self.hsm.pin_env, "") if self.hsm.pin_env else ""
        if pin:
            return pin
        path = Path(self.hsm.pin_file) if self.hsm.pin_file else None
        if path is None and self.dev.bootstrap:
            path = self.dev_pin_file
        if path is None:
            raise ConfigError(
                f"no HSM PIN: set the environment variable {self.hsm.pin_env or '(pin_env)'} "
                "or name a file in [hsm] pin_file"
            )
        try:
            pin = path.read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the PIN file {path}: {e.strerror}") from e
        if not pin:
            raise ConfigError(f"the PIN file {path} is empty")
        return pin


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "hsm": HsmConfig,
    "issuer": IssuerConfig,
    "validation": ValidationConfig,
    "verify": VerifyConfig,
    "hash_only": HashOnlyConfig,
    "officers": OfficersConfig,
    "audit": AuditConfig,
    "dev": DevConfig,
    "tls": TlsConfig,
}


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Embedded defaults, overridden by the TOML file at ``path`` when given."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from e
    return config_from_mapping(data, source=str(path))


def config_from_mapping(data: dict[str, Any], source: str = "config") -> Config:
    config = Config()
    for section, values in data.items():
        cls = _SECTIONS.get(section)
        if cls is None:
            raise ConfigError(f"{source}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        if section == "hsm" and any(k == "pin" or k.endswith("_pin") for k in values):
            raise ConfigError(
                f"{source}: PINs never go in the config file; use [hsm] pin_env or pin_file"
            )
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) in [{section}]: {', '.join(sorted(unknown))}"
            )
        current = getattr(config, section)
        kwargs = {k: _coerce(section, k, v, getattr(current, k)) for k, v in values.items()}
        config = replace(config, **{section: replace(current, **kwargs)})
    _check(config, source)
    return config


def _coerce(section: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"[{section}] {key} must be a list")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"[{section}] {key} must be a table")
        return {**default, **value}
    if isinstance(default, bool) is not isinstance(value, bool) or (
        not isinstance(value, type(default))
        and not (isinstance(default, float) and isinstance(value, int))
    ):
        raise ConfigError(f"[{section}] {key} must be {type(default).__name__}, got {value!r}")
    return value


def _check(config: Config, source: str) -> None:
    if not 1 <= config.server.max_batch <= 100_000:
        raise ConfigError(f"{source}: [server] max_batch must be 1..100000")
    if config.server.stream_window < 1:
        raise ConfigError(f"{source}: [server] stream_window must be ≥ 1")
    bad_types = set(config.issuer.validity_days) - {t.value for t in CertType}
    if bad_types:
        raise ConfigError(f"{source}: [issuer.validity_days] unknown type(s) {sorted(bad_types)}")
    if any(d < 1 for d in config.issuer.validity_days.values()):
        raise ConfigError(f"{source}: [issuer.validity_days] must be ≥ 1 day")
    if len(config.issuer.country) != 2 or not config.issuer.country.isupper():
        raise ConfigError(f"{source}: [issuer] country must be an ISO 3166-1 alpha-2 code")
    if config.validation.deprecated_codes not in ("warn", "refuse"):
        raise ConfigError(f'{source}: [validation] deprecated_codes must be "warn" or "refuse"')
    try:
        config.validation.policy()
    except ValueError as e:
        raise ConfigError(f"{source}: [validation] {e}") from e
    if config.issuer.key_usage_days < 1:
        raise ConfigError(f"{source}: [issuer] key_usage_days must be ≥ 1")
    if config.officers.required_approvals < 2:
        raise ConfigError(
            f"{source}: [officers] required_approvals must be ≥ 2 (dual control, issue 4)"
        )
    if config.officers.proposal_hours <= 0:
        raise ConfigError(f"{source}: [officers] proposal_hours must be > 0")
    bad_algs = set(config.dev.key_algorithms) - {"ES256", "PS256"}
    if bad_algs:
        raise ConfigError(f"{source}: [dev] key_algorithms: unknown {sorted(bad_algs)}")
    _check_tls(config.tls, source)


def _check_tls(tls: TlsConfig, source: str) -> None:
    """The shape of ``[tls]``; whether its files can be read is checked when the server loads
    them (``signer.front.tls.server_credentials``), so key-management commands still run."""
    if tls.identity not in IDENTITY_MODES:
        raise ConfigError(
            f"{source}: [tls] identity must be one of {', '.join(IDENTITY_MODES)}, "
            f"got {tls.identity!r}"
        )
    if bool(tls.cert) != bool(tls.key):
        missing, present = ("key", "cert") if tls.cert else ("cert", "key")
        raise ConfigError(
            f"{source}: [tls] {present} is set but {missing} is not: give both the server "
            "certificate and its private key"
        )
    if tls.client_ca and not tls.enabled:
        raise ConfigError(
            f"{source}: [tls] client_ca is set without cert and key: mutual TLS needs the "
            "server's own certificate and key too"
        )
