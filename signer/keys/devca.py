"""Development PKI: a throw-away CSCA in a file and DSCs for keys generated in the dev token.

LOUDLY NOT FOR PRODUCTION: the CSCA private key is a plain file under ``.dev/``. Production CSCAs
live offline and DSCs are certified through ``signer keys csr`` / ``import-cert`` (issue 4).
``make run`` and the test suite use this to have a complete appliance on a fresh machine.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hsm import HsmToken, KeyAlgorithm
from signer.domain import Alg, CertType
from signer.keys.dsc import EKU_OIDS
from signer.keys.state import STATE_APPLICATION, KeyState, KeyStateRecord

NOT_FOR_PRODUCTION = "NOT FOR PRODUCTION"
DSC_VALIDITY = dt.timedelta(days=730)  # GOV §3.2: DSC certificate about 2 years
_KEY_ALGORITHMS = {Alg.ES256: KeyAlgorithm.EC_P256, Alg.PS256: KeyAlgorithm.RSA_2048}


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
        public_key = serialization.load_der_public_key(public_key_der)
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError(f"a DSC key must be EC or RSA, not {type(public_key).__name__}")
        csca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hcert-signer development"),
                        x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                    ]
                )
            )
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
) -> x509.Certificate:
    """Generate a key in the token, certify it with the dev CSCA, store the DSC, set its state."""
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
    token.store_certificate(
        label,
        key_id,
        certificate.public_bytes(serialization.Encoding.DER),
        certificate.subject.public_bytes(),
    )
    token.put_data(
        STATE_APPLICATION, label, KeyStateRecord(state, int(now.timestamp()) - 1).to_bytes()
    )
    return certificate


def ensure_dev_keys(
    token: HsmToken,
    directory: Path,
    country: str,
    algorithms: Iterable[Alg],
    progress: Callable[[str], None],
) -> None:
    """First run: a dev CSCA and one active DSC per algorithm. Later runs: nothing."""
    certified = {c.label for c in token.certificates()}
    csca = DevCsca.load_or_create(directory, country)
    for alg in algorithms:
        label = f"dev-dsc-{alg.value.lower()}"
        if label in certified:
            continue
        progress(f"dev CSCA: {directory / 'dev-csca.pem'} ({NOT_FOR_PRODUCTION})")
        progress(f"generating {alg.value} key {label!r} in the token and certifying it …")
        create_dev_key(token, csca, alg, label, country)
