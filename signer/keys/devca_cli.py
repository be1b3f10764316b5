"""``signer dev-ca``: the development CSCA — NOT FOR PRODUCTION (its private key is a file).

``init`` creates (or shows) the dev CSCA under the dev directory; ``issue`` certifies a CSR made
with ``signer keys csr`` so the whole rotation runbook can be rehearsed on a laptop. Refused
unless the config is a development one (``[dev] bootstrap = true``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer.config import Config, load_config
from signer.domain import CertType
from signer.errors import ConfigError, RequestError
from signer.keys.cli_parser import DEV_CA_BANNER
from signer.keys.devca import DevCsca, issue_from_csr


def run(args: argparse.Namespace) -> int:
    print(DEV_CA_BANNER, file=sys.stderr)
    config = load_config(args.config)
    csca = _csca(config)
    if args.devca_command == "init":
        print(config.dev_dir / "dev-csca.pem")
        return 0
    from signer.verify_cli import parse_instant

    try:
        data = args.csr.read_bytes()
    except OSError as e:
        raise RequestError(f"cannot read {args.csr}: {e.strerror}") from e
    try:
        csr = (
            x509.load_pem_x509_csr(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_csr(data)
        )
    except ValueError as e:
        raise RequestError(f"{args.csr} is not a PKCS#10 request: {e}") from e
    try:
        types = [CertType(t.strip()) for t in args.types.split(",") if t.strip()]
    except ValueError as e:
        raise RequestError(f"--types: {e}") from e
    start = (
        parse_instant(args.valid_from)
        if args.valid_from
        else dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )
    try:
        dsc = issue_from_csr(csca, csr, types, start, start + dt.timedelta(days=args.days))
    except ValueError as e:
        raise RequestError(str(e)) from e
    args.out.write_bytes(dsc.public_bytes(serialization.Encoding.PEM))
    print(f"wrote {args.out} (dev CSCA {config.dev_dir / 'dev-csca.pem'})", file=sys.stderr)
    return 0


def _csca(config: Config) -> DevCsca:
    if not config.dev.bootstrap:
        raise ConfigError(
            "signer dev-ca works only with a development config ([dev] bootstrap = true); "
            "production DSCs come from your country's CSCA"
        )
    return DevCsca.load_or_create(config.dev_dir, config.issuer.country)
