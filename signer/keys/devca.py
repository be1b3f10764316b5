"""Development PKI: a throw-away CSCA in a file and DSCs for keys generated in the dev token.

LOUDLY NOT FOR PRODUCTION: the CSCA private key is a plain file under ``.dev/``, and so are the
two dev security officers' keys (``.dev/officers/``) that approve the dev keys' state records.
Production CSCAs live offline and DSCs are certified through ``signer keys csr`` / ``import-cert``
(issue 4). ``make run`` and the test suite use this to have a complete appliance on a fresh
machine; ``signer dev-ca issue`` certifies a CSR with it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hsm import HsmToken, KeyAlgorithm, SigningKey, StoredCertificate
from signer.domain import Alg, CertType
from signer.keys.dsc import EKU_OIDS, certificate_types
from signer.keys.officers import OfficerKey, create_officer
from signer.keys.roster import RosterDocument, create_first_roster, newest_roster, roster_file
from signer.keys.state import STATE_APPLICATION, KeyState, KeyStateRecord

NOT_FOR_PRODUCTION = "NOT FOR PRODUCTION"
DSC_VALIDITY = dt.timedelta(days=730)  # GOV §3.2: DSC certificate about 2 years
_KEY_ALGORITHMS = {Alg.ES256: KeyAlgorithm.EC_P256, Alg.PS256: KeyAlgorithm.RSA_2048}
DEV_OFFICERS = ("dev-officer-a", "dev-officer-b")


def dev_officers(directory: Path, pin_file: Path, create: bool = True) -> tuple[OfficerKey, ...]:
    """The two dev security officers in ``directory``, created when missing, with their signed
    roster (``roster.1.json``, both signatures) pinned in ``pin_file`` (issue 8 §8).

    A dev directory from before the signed roster gets its roster and pin on the next start
    (the dev appliance needs no extra step); an existing pin is never rewritten, so a roster
    that no longer matches it is refused like anywhere else."""
    keys = [directory / f"{name}.key.pem" for name in DEV_OFFICERS]
    for name, path in zip(DEV_OFFICERS, keys, strict=True):
        if create and not path.exists():
            create_officer(directory, name)
    first = roster_file(directory, 1)
    if create and not first.exists():
        create_first_roster(directory, keys, len(DEV_OFFICERS))
    if create and not pin_file.exists():
        pin_file.write_text(RosterDocument.load(first).sha256() + "\n")
    roster, _ = newest_roster(directory, pin_file.read_text().strip())
    return tuple(OfficerKey.load(path, roster) for path in keys)


@dataclass(frozen=True, slots=True)
class DevCsca:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def load_or_create(cls, directory: Path, country: str) -> DevCsca:
        key_path, cert_path = directory / "dev-csca.key.pem", directory / "dev-csca.pem"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"hcert-signer DEV CSCA {NOT_FOR_PRODUCTION}"
                ),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hcert-signer development"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=4 * 365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(key, certificate)

    def issue_dsc(
        self,
        public_key_der: bytes,
        common_name: str,
        country: str,
        not_before: dt.datetime,
        not_after: dt.datetime,
        types: Iterable[CertType] = tuple(CertType),
    ) -> x509.Certificate:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hcert-signer development"),
                x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            ]
        )
        public_key = serialization.load_der_public_key(public_key_der)
        return self.certify(subject, public_key, not_before, not_after, types)

    def certify(
        self,
        subject: x509.Name,
        public_key: object,
        not_before: dt.datetime,
        not_after: dt.datetime,
        types: Iterable[CertType],
    ) -> x509.Certificate:
        """A DSC per HCERT.md §7: keyUsage digitalSignature, the DCC EKUs of ``types``,
        AKI = the CSCA's SKI, an SKI of its own."""
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError(f"a DSC key must be EC or RSA, not {type(public_key).__name__}")
        csca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([EKU_OIDS[t] for t in types]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(csca_ski.value),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self.key, hashes.SHA256())
        )


def issue_from_csr(
    csca: DevCsca,
    csr: x509.CertificateSigningRequest,
    types: Iterable[CertType],
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """``signer dev-ca issue``: a DSC for the CSR's key and subject (its signature is checked)."""
    if not csr.is_signature_valid:
        raise ValueError("the CSR's signature does not verify with its own public key")
    return csca.certify(csr.subject, csr.public_key(), not_before, not_after, types)


def create_dev_key(
    token: HsmToken,
    csca: DevCsca,
    alg: Alg,
    label: str,
    country: str,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    types: Iterable[CertType] = tuple(CertType),
    state: KeyState = KeyState.ACTIVE,
    officers: tuple[OfficerKey, ...] = (),
) -> x509.Certificate:
    """Generate a key in the token, certify it with the dev CSCA, store the DSC, set its state.

    The state record is signed by ``officers`` (the dev officers, or test officers): without
    them it carries no approvals and a server enforcing dual control ignores the key."""
    key_id = secrets.token_bytes(16)
    token.generate_key(_KEY_ALGORITHMS[alg], label, key_id)
    now = dt.datetime.now(dt.UTC)
    not_before = not_before or now - dt.timedelta(hours=1)
    certificate = csca.issue_dsc(
        token.public_key_der(key_id),
        f"hcert-signer DEV DSC {alg.value} {label} {NOT_FOR_PRODUCTION}",
        country,
        not_before,
        not_after or not_before + DSC_VALIDITY,
        types,
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    token.store_certificate(label, key_id, der, certificate.subject.public_bytes())
    write_dev_state(token, label, key_id, alg, der, state, int(now.timestamp()) - 1, officers)
    return certificate


def write_dev_state(
    token: HsmToken,
    label: str,
    key_id: bytes,
    alg: Alg,
    der: bytes,
    state: KeyState,
    at: int,
    officers: tuple[OfficerKey, ...],
    version: int = 1,
) -> KeyStateRecord:
    """Write an approved state record (``state`` from ``at`` on) for a dev key's DSC; a test
    that changes a key's state gives each new record a higher ``version``."""
    record = KeyStateRecord(
        label=label,
        key_id=key_id,
        alg=alg,
        types=certificate_types(x509.load_der_x509_certificate(der)),
        issued_at=at,
        op="dev-bootstrap",
        active_from=at if state is not KeyState.PENDING else None,
        retire_at=at if state is KeyState.RETIRED else None,
        certificate_sha256=hashlib.sha256(der).digest(),
        version=version,
    ).signed_by(officers)
    token.put_data(STATE_APPLICATION, label, record.to_bytes())
    return record


def ensure_dev_keys(
    token: HsmToken,
    directory: Path,
    country: str,
    algorithms: Iterable[Alg],
    progress: Callable[[str], None],
    officers_dir: Path | None = None,
    roster_pin: Path | None = None,
) -> None:
    """First run: two dev officers and their signed, pinned roster, a dev CSCA and one active
    DSC per algorithm.

    Later runs create a key only for an algorithm with no DSC in the token at all (a rotated
    and destroyed dev key is not brought back), and give a dev key that has no readable
    state record (a token from before issue 4) an approved active one."""
    officers = dev_officers(
        officers_dir or directory / "officers", roster_pin or directory / "roster.sha256"
    )
    csca = DevCsca.load_or_create(directory, country)
    stored = token.certificates()
    keys = {k.label: k for k in token.signing_keys()}
    readable: set[str] = set()
    for data in token.data_objects(STATE_APPLICATION):
        try:
            readable.add(KeyStateRecord.from_bytes(data.value).label)
        except (ValueError, KeyError, TypeError):
            continue
    for alg in algorithms:
        label = f"dev-dsc-{alg.value.lower()}"
        key = keys.get(label)
        mine = next((c for c in stored if key is not None and c.key_id == key.key_id), None)
        if key is not None and mine is not None and label not in readable:
            progress(f"approving dev key {label!r} with the dev officers ({NOT_FOR_PRODUCTION})")
            now = int(dt.datetime.now(dt.UTC).timestamp())
            write_dev_state(token, label, key.key_id, alg, mine.der, KeyState.ACTIVE, now, officers)
            continue
        if any(_KEY_ALGORITHMS[alg] is k.algorithm for k in keys.values() if _has_dsc(k, stored)):
            continue
        progress(f"dev CSCA: {directory / 'dev-csca.pem'} ({NOT_FOR_PRODUCTION})")
        progress(f"generating {alg.value} key {label!r} in the token and certifying it …")
        create_dev_key(token, csca, alg, label, country, officers=officers)


def _has_dsc(key: SigningKey, stored: list[StoredCertificate]) -> bool:
    return any(c.key_id == key.key_id for c in stored)
