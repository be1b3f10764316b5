"""Configuration: frozen dataclasses, embedded defaults, optional TOML file.

Fail closed (issue 7 §6): ``load_config(None)`` is the development appliance (``make run``): a
SoftHSM token under ``.dev/``, created with a dev CSCA and DSC on first run. A config file starts
from production-safe defaults instead: the dev bootstrap runs only when the file itself says
``[dev] bootstrap = true``, and only on SoftHSM. ``config/example.toml`` is a production start.
PINs never live here: the config names an environment variable and/or a file to read them from.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from signer.config_schema import (
    Where,
    above,
    at_least,
    between,
    build,
    check,
    each,
    each_key,
    matching,
    non_empty,
    one_of,
    rules,
)
from signer.domain import CertType
from signer.errors import ConfigError
from signer.hcert.validation import IMPLEMENTED_VERSIONS, ValidationPolicy

DEFAULT_VALIDITY_DAYS = 365  # issue 2 §4: exp = iat + 365 days unless configured per type
_DAYS_NOTE = "days; at most 100 years"
_ALPHA_2 = 'an ISO 3166-1 alpha-2 code such as "VN"'
#: ``[log] level`` values, lowest first (the names of :mod:`logging`, lower case).
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = field(default=50051, metadata=rules(between(0, 65535, "0 = any free port")))
    metrics_host: str = "127.0.0.1"
    metrics_port: int = field(default=9464, metadata=rules(between(0, 65535, "0 = any free port")))
    max_batch: int = field(default=1000, metadata=rules(between(1, 100_000)))
    max_payload_bytes: int = field(default=16384, metadata=rules(at_least(1)))
    stream_window: int = field(
        default=2, metadata=rules(at_least(1))
    )  # batches of a stream in flight
    # on SIGTERM: time to finish the calls in flight
    grace_seconds: float = field(default=10.0, metadata=rules(at_least(0)))
    # calls one client connection may have open at once (HTTP/2 streams); 0 = gRPC's own
    # default, no limit. gRPC reads a request whole before the front sees it: this bounds
    # the front's memory against one connection's large requests.
    max_concurrent_streams: int = field(
        default=0, metadata=rules(between(0, 100_000, "0 = no limit"))
    )


@dataclass(frozen=True, slots=True)
class HsmConfig:
    module: str = field(
        default="softhsm", metadata=rules(non_empty("a path"))
    )  # path to the PKCS#11 module; "softhsm" finds libsofthsm2.so
    token_label: str = "hcert-dev"  # noqa: S105 - a label, not a secret
    pin_env: str = "HCERT_SIGNER_PIN"
    pin_file: str = ""
    key_refresh_seconds: float = field(default=5.0, metadata=rules(above(0)))
    # signing workers, one HSM session each; 0 = the cores this process may use
    sessions: int = field(default=0, metadata=rules(between(0, 256, "0 = one per usable core")))

    def session_count(self) -> int:
        return self.sessions if self.sessions > 0 else available_cores()

    @property
    def is_softhsm(self) -> bool:
        """True for ``softhsm`` or a path to ``libsofthsm2.so``: the only module the dev
        bootstrap may write a dev CSCA and dev officers into."""
        return self.module == "softhsm" or Path(self.module).name == "libsofthsm2.so"


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    """``csca``: PEM files (each one or more certificates) of the CSCAs every DSC must chain to
    (issue 8); none = the dev CSCA in a dev config, refused in any other."""

    country: str = field(default="VN", metadata=rules(matching("[A-Z]{2}", _ALPHA_2)))
    csca: tuple[str, ...] = field(default=(), metadata=rules(each(non_empty("a PEM file path"))))
    key_usage_days: int = field(
        default=183, metadata=rules(at_least(1))
    )  # GOV §3.2: private-key usage ~6 months (metric when no PKUP ext)
    validity_days: dict[str, int] = field(
        default_factory=lambda: {t.value: DEFAULT_VALIDITY_DAYS for t in CertType},
        metadata=rules(each_key(one_of(*CertType)), each(between(1, 36_500, _DAYS_NOTE))),
    )

    def validity_seconds(self, cert_type: CertType) -> int:
        return self.validity_days.get(cert_type.value, DEFAULT_VALIDITY_DAYS) * 86400


@dataclass(frozen=True, slots=True)
class ValidationConfig:
    """Payload validation policy (issue 3); see :class:`ValidationPolicy` for each field."""

    deprecated_codes: str = field(default="warn", metadata=rules(one_of("warn", "refuse")))
    derive_transliteration: bool = True
    clock_skew_seconds: int = field(default=300, metadata=rules(at_least(0)))
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

    ``directory`` holds the signed roster, ``roster.1.json``, ``roster.2.json``, … (issue 8
    §8, ``signer.keys.roster``); "" means ``<dev directory>/officers`` in a dev config (the two
    dev officers). ``roster_sha256`` pins version 1 by the SHA-256 of its content; "" means the
    pin the dev bootstrap wrote (``<dev directory>/roster.sha256``) in a dev config. The
    roster's own ``required_approvals`` counts; the one here is a floor it may not go below."""

    directory: str = ""
    roster_sha256: str = field(
        default="",
        metadata=rules(matching("([0-9a-f]{64})?", "64 lowercase hex digits (a SHA-256)")),
    )
    required_approvals: int = field(default=2, metadata=rules(at_least(2, "dual control")))
    proposal_hours: float = field(
        default=24.0, metadata=rules(above(0))
    )  # a proposal not approved within this time expires


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """The key-management audit trail (JSON lines, SHA-256 hash chain); "" = ``<dev>/audit.jsonl``
    in a dev config."""

    path: str = ""


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """The issuance ledger (issue 8): one record per signed item, hash-chained. ``path`` is its
    SQLite file ("" = ``<dev>/ledger.sqlite`` in a dev config), or ``url`` a PostgreSQL database
    (``postgresql://…``, no password: libpq reads PGPASSWORD or PGPASSFILE) that replicas
    share; ``chain`` names this appliance's chain ("" = the host name), so replicas sharing one
    database keep apart chains. A checkpoint
    (the head signed in the HSM) is made every ``checkpoint_records`` records or
    ``checkpoint_seconds`` seconds while records arrive, and at shutdown."""

    path: str = ""
    url: str = ""
    chain: str = ""
    checkpoint_records: int = field(default=10_000, metadata=rules(at_least(1)))
    checkpoint_seconds: float = field(default=10.0, metadata=rules(above(0)))

    def __post_init__(self) -> None:
        from signer.ledger.store import check_target, is_postgres

        if self.path and self.url:
            raise ConfigError("[ledger] path and url: name one ledger, a SQLite file or a database")
        if self.url:
            check_target(self.url, "[ledger] url")
            if not is_postgres(self.url):
                raise ConfigError("[ledger] url must be a postgresql:// URL")
        elif self.path and is_postgres(self.path):
            raise ConfigError("[ledger] path names a database: give a PostgreSQL URL as url")


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
    identity: str = field(default="cn", metadata=rules(one_of(*IDENTITY_MODES)))

    @property
    def enabled(self) -> bool:
        return bool(self.cert and self.key)

    @property
    def mutual(self) -> bool:
        """Clients must present a certificate that chains to ``client_ca``."""
        return self.enabled and bool(self.client_ca)


@dataclass(frozen=True, slots=True)
class DevConfig:
    """Development bootstrap. Never enable in production: the CSCA key sits in a file.

    Off unless asked for: a config file that leaves out ``[dev]`` never bootstraps; only
    :func:`load_config` without a file (the dev appliance) turns it on."""

    bootstrap: bool = False
    directory: str = field(default=".dev", metadata=rules(non_empty("a directory")))
    key_algorithms: tuple[str, ...] = field(
        default=("ES256",), metadata=rules(each(one_of("ES256", "PS256")))
    )


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Log lines (issue 11 §2): ``json`` (one JSON object a line, for a log collector) or
    ``text`` (for a console). A config file logs JSON unless it says ``text``; the dev
    appliance (no ``--config``) logs text. ``level`` is the lowest level written: at
    ``warning`` the one line per RPC (level info) is left out."""

    level: str = field(default="info", metadata=rules(one_of(*LOG_LEVELS)))
    format: str = field(default="json", metadata=rules(one_of("json", "text")))


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """The quotas of one client (issue 7 §4), resolved: a client's own values over [quotas]."""

    items_per_second: float  # token-bucket refill
    burst: int  # bucket size in items: the most a client can send at once
    items_per_day: int  # per UTC day; 0 = unlimited
    max_in_flight_items: int  # items of this client being worked on at once


@dataclass(frozen=True, slots=True)
class QuotasConfig:
    """Per-client defaults (for every client without its own values) and appliance-wide limits."""

    items_per_second: float = field(default=50000.0, metadata=rules(above(0)))
    burst: int = field(default=100000, metadata=rules(at_least(1)))
    items_per_day: int = field(default=0, metadata=rules(at_least(0, "0 = unlimited")))
    max_in_flight_items: int = field(default=10000, metadata=rules(at_least(1)))
    # the whole appliance, every client together
    total_in_flight_items: int = field(default=20000, metadata=rules(at_least(1)))

    def limits(self) -> ClientLimits:
        return ClientLimits(
            items_per_second=self.items_per_second,
            burst=self.burst,
            items_per_day=self.items_per_day,
            max_in_flight_items=self.max_in_flight_items,
        )


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """One ``[[policy.clients]]`` table: a client identity (TLS subject CN or SAN), its roles,
    the certificate types it may sign, and its own quotas (``None`` = the [quotas] default)."""

    name: str = field(metadata=rules(non_empty("the client's identity")))
    roles: tuple[str, ...] = field(metadata=rules(non_empty("at least one role")))
    types: tuple[CertType, ...] = field(
        default=tuple(CertType), metadata=rules(non_empty("at least one certificate type"))
    )
    items_per_second: float | None = field(default=None, metadata=rules(above(0)))
    burst: int | None = field(default=None, metadata=rules(at_least(1)))
    items_per_day: int | None = field(default=None, metadata=rules(at_least(0, "0 = unlimited")))
    max_in_flight_items: int | None = field(default=None, metadata=rules(at_least(1)))

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(dict.fromkeys(self.types)))  # each type once

    def limits(self, quotas: QuotasConfig) -> ClientLimits:
        return ClientLimits(
            items_per_second=(
                quotas.items_per_second if self.items_per_second is None else self.items_per_second
            ),
            burst=quotas.burst if self.burst is None else self.burst,
            items_per_day=quotas.items_per_day
            if self.items_per_day is None
            else self.items_per_day,
            max_in_flight_items=(
                quotas.max_in_flight_items
                if self.max_in_flight_items is None
                else self.max_in_flight_items
            ),
        )


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Authorisation (issue 7 §3): the role of every client the policy does not name, and the
    named clients. Fail closed: a config file that does not say otherwise gives an unnamed
    client nothing (``none``); only the embedded dev appliance on loopback (``signer serve``
    without ``--config``) and ``config/dev.toml`` make everyone an ``issuer``."""

    default: str = "none"
    clients: tuple[ClientPolicy, ...] = ()


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
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    dev: DevConfig = field(default_factory=DevConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    quotas: QuotasConfig = field(default_factory=QuotasConfig)
    log: LogConfig = field(default_factory=LogConfig)

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
    def dev_roster_pin_file(self) -> Path:
        """Where the dev bootstrap pins its dev officers' roster (NOT FOR PRODUCTION)."""
        return self.dev_dir / "roster.sha256"

    @property
    def roster_sha256(self) -> str:
        """The pin of the roster's version 1 (ConfigError where a roster is needed and none is
        configured)."""
        if self.officers.roster_sha256:
            return self.officers.roster_sha256
        if self.dev.bootstrap:
            try:
                return self.dev_roster_pin_file.read_text().strip()
            except OSError as e:
                raise ConfigError(
                    f"the dev roster pin {self.dev_roster_pin_file} cannot be read "
                    f"({e.strerror}): 'signer serve' without --config writes it on its first run"
                ) from e
        raise ConfigError(
            "[officers] roster_sha256 is not set: pin the first version of the officer roster "
            "by its SHA-256 ('signer keys roster show --config F' prints it as 'pin'), so that "
            "a roster written into the directory by someone else is refused"
        )

    @property
    def audit_path(self) -> Path:
        if self.audit.path:
            return Path(self.audit.path).resolve()
        if self.dev.bootstrap:
            return self.dev_dir / "audit.jsonl"
        raise ConfigError("[audit] path is not set: name the key-management audit trail file")

    @property
    def ledger_target(self) -> str:
        """The ledger: a PostgreSQL URL or a SQLite file's path (``signer.ledger.store``)."""
        if self.ledger.url:
            return self.ledger.url
        if self.ledger.path:
            return str(Path(self.ledger.path).resolve())
        if self.dev.bootstrap:
            return str(self.dev_dir / "ledger.sqlite")
        raise ConfigError(
            "[ledger] path or url is not set: name the SQLite file or the PostgreSQL database of "
            "the issuance ledger; the appliance signs nothing it cannot record"
        )

    @property
    def csca_paths(self) -> tuple[Path, ...]:
        """The CSCA files of ``[issuer] csca``; in a dev config by default the dev CSCA's."""
        if self.issuer.csca:
            return tuple(Path(p).resolve() for p in self.issuer.csca)
        if self.dev.bootstrap:
            return (self.dev_dir / "dev-csca.pem",)
        raise ConfigError(
            "[issuer] csca is not set: name the PEM file(s) of the CSCA certificates every DSC "
            "must chain to; the servers sign with no DSC that does not"
        )

    @property
    def ledger_chain(self) -> str:
        return self.ledger.chain or socket.gethostname()

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


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 ``cpu.max``
    quota (a Kubernetes CPU limit), not the host's core count."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def dev_defaults() -> Config:
    """The embedded development appliance (``signer serve`` without ``--config``)."""
    return Config(
        dev=DevConfig(bootstrap=True),
        policy=PolicyConfig(default="issuer"),
        log=LogConfig(format="text"),
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """No ``path``: the dev appliance. A path: production-safe defaults (no dev bootstrap)
    overridden by that TOML file."""
    if path is None:
        return dev_defaults()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: the config file is not UTF-8 text (byte {e.start})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: the config file is not valid TOML: {e}") from e
    return config_from_mapping(data, source=str(path))


def config_from_mapping(data: dict[str, Any], source: str = "config") -> Config:
    """``data`` (a parsed TOML file) over the production-safe defaults: every key converted to
    its field's type (``signer.config_schema``), then :func:`config_checked`'s checks."""
    config = Config()
    sections = {f.name for f in fields(Config)}
    for section, values in data.items():
        if section not in sections:
            raise ConfigError(
                f"{source}: unknown section [{section}] (known: {', '.join(sorted(sections))})"
            )
        if section == "hsm" and isinstance(values, dict) and any(_is_pin(k) for k in values):
            raise ConfigError(
                f"{source}: PINs never go in the config file; use [hsm] pin_env or pin_file"
            )
        current = getattr(config, section)
        built = build(type(current), values, Where(source, section), base=current)
        config = replace(config, **{section: built})
    _check(config, source)
    return config


def _is_pin(key: str) -> bool:
    return key == "pin" or key.endswith("_pin")


def _check_policy(config: Config, source: str) -> None:
    """Roles, duplicate names and quota ranges.

    Every per-client limit that bounds one batch (``burst``, ``max_in_flight_items``, a non-zero
    ``items_per_day``) and ``total_in_flight_items`` must hold a full ``[server] max_batch``:
    otherwise a batch the API accepts would be refused by the quotas on every try, a mistake
    clients would find in production and the operator could only find in their logs. Refused
    here, at start, where the operator sees it. (A slow client is limited by
    ``items_per_second`` and ``items_per_day``; its burst need only hold one batch.)
    """
    from signer.front.policy import ROLES  # the role table lives with the policy, which imports
    # this module; imported here, not at the top, so loading the config never loads the front

    max_batch = config.server.max_batch
    if config.policy.default not in ROLES:
        raise ConfigError(
            f"{source}: [policy] default: unknown role {config.policy.default!r} "
            f"(known: {', '.join(sorted(ROLES))})"
        )
    q = config.quotas
    if q.total_in_flight_items < max_batch:
        raise ConfigError(
            f"{source}: [quotas] total_in_flight_items must be ≥ [server] max_batch "
            f"({max_batch}): a full batch could never be admitted"
        )
    _check_limits(q.limits(), f"{source}: [quotas]", max_batch)
    seen: set[str] = set()
    for client in config.policy.clients:
        where = f"{source}: [[policy.clients]] {client.name!r}"
        if client.name in seen:
            raise ConfigError(f"{where}: the same name appears twice")
        if client.name == "other":
            raise ConfigError(f'{where}: "other" is reserved (the metric label of unnamed clients)')
        seen.add(client.name)
        bad_roles = sorted(set(client.roles) - set(ROLES))
        if bad_roles:
            raise ConfigError(
                f"{where}: roles: unknown {bad_roles} (known: {', '.join(sorted(ROLES))})"
            )
        _check_limits(client.limits(q), where, max_batch)


def _check_limits(limits: ClientLimits, where: str, max_batch: int) -> None:
    """Each limit that bounds a batch must hold a full one (ranges are the fields' rules)."""
    for key, value in (
        ("burst", limits.burst),
        ("max_in_flight_items", limits.max_in_flight_items),
        ("items_per_day", limits.items_per_day or max_batch),
    ):
        if value < max_batch:
            raise ConfigError(
                f"{where}: {key} ({value}) must be ≥ [server] max_batch ({max_batch}): "
                "a full batch could never be admitted"
            )


def config_checked(config: Config, source: str) -> Config:
    """``config`` after the same checks a config file gets (for command-line overrides)."""
    _check(config, source)
    return config


def _check(config: Config, source: str) -> None:
    """Every field's own rules (declared on the field), then what spans fields."""
    for section in fields(config):
        check(getattr(config, section.name), Where(source, section.name))
    try:
        config.validation.policy()
    except ValueError as e:
        raise ConfigError(f"{source}: [validation] {e}") from e
    if config.dev.bootstrap and not config.hsm.is_softhsm:
        raise ConfigError(
            f"{source}: [dev] bootstrap creates a dev CSCA and dev officers in the token; it "
            f"runs only on SoftHSM, never on a production HSM module ({config.hsm.module!r}): "
            'remove [dev] bootstrap (or set it to false), or set [hsm] module = "softhsm"'
        )
    _check_policy(config, source)
    _check_tls(config.tls, source)


def _check_tls(tls: TlsConfig, source: str) -> None:
    """The shape of ``[tls]``; whether its files can be read is checked when the server loads
    them (``signer.front.tls.server_credentials``), so key-management commands still run."""
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
