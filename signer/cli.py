"""The ``signer`` command. ``SignerError`` is caught once, here (STYLE.md "Errors")."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from signer.config import load_config
from signer.errors import SignerError
from signer.ledger.cli import add_audit_parser
from signer.validate import add_validate_parser

DEFAULT_SERVER = "127.0.0.1:50051"

_EPILOG = """\
examples:
  signer serve                              dev appliance on embedded defaults (SoftHSM in .dev/)
  signer serve --config config/example.toml production: vendor PKCS#11 module, PIN from env/file
  signer validate certs.jsonl --config config/example.toml --report report.html
  signer sign certs.jsonl --server 127.0.0.1:50051 > signed.jsonl
  signer trust-list --server 127.0.0.1:50051 --out trust/
  signer verify signed.jsonl --trust-dir trust/ --at 2027-06-01T00:00Z
  signer reissue expiring.jsonl --server 127.0.0.1:50051 > reissued.jsonl
  signer bench --items 200000
  signer keys list                          security officers: DSC keys in the HSM (keys --help)
  signer dev-tls --out .dev/tls --client issuer-a --client reader-b
  signer health 127.0.0.1:50051             exit 0 only when the appliance is SERVING
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signer",
        description="hcert-signer: signs EU DCC payloads into HC1: strings with keys in a "
        "PKCS#11 HSM.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the appliance: one front process on the port, one signing worker per HSM session",
        description="Run the appliance. Without --config it uses the embedded development "
        "defaults: a SoftHSM token under .dev/ with a dev CSCA and DSC created on first run.",
    )
    serve.add_argument(
        "--config", type=Path, help="TOML config file (default: embedded dev defaults)"
    )
    serve.add_argument("--host", help="gRPC listen address; overrides the config")
    serve.add_argument("--metrics-host", help="Prometheus listen address; overrides the config")
    serve.add_argument(
        "--port", type=int, help="gRPC port (0 = any free port); overrides the config"
    )
    serve.add_argument("--metrics-port", type=int, help="Prometheus port (0 = any free port)")
    _add_serve_overrides(serve)
    serve.add_argument(
        "--ready-file", type=Path, help="write {port, metrics_port, pids} as JSON here once serving"
    )

    sign = commands.add_parser(
        "sign",
        help="sign a JSONL file of DCC payloads through a running server",
        description="Reads one DCC JSON payload per line (FILE or - for stdin) and writes one JSON "
        "result per line to stdout: {line, id, hc1, kid, alg, iat, exp} or {line, id, errors}. "
        "Progress goes to stderr. Exit status 0 all signed, 1 any rejected, 2 usage, connection or "
        "I/O error. --resume carries on a stopped run from its --out file.",
    )
    sign.add_argument("file", help="JSONL input, or - for stdin")
    _add_signing_client_options(sign)

    add_validate_parser(commands)
    trust = commands.add_parser(
        "trust-list",
        help="write every DSC the server knows as PEM files",
        description="Fetches the trust list and writes one PEM file per DSC "
        "(<label>-<kid hex>.pem, the label cut to A-Z a-z 0-9 _ . -) into --out; prints a table "
        "of kid, alg, state and validity.",
    )
    trust.add_argument(
        "--server", default=DEFAULT_SERVER, help=f"host:port (default {DEFAULT_SERVER})"
    )
    trust.add_argument("--out", type=Path, required=True, help="directory for the PEM files")
    _add_tls_client_options(trust)

    reissue = commands.add_parser(
        "reissue",
        help="re-issue earlier HC1 strings with a fresh iat/exp through a running server",
        description="Reads HC1 strings (one per line, bare or as the JSON lines 'signer sign' "
        "writes) and asks the server to re-issue them: each must verify against the "
        "appliance's own DSCs (an expired exp is fine), its payload is validated again and "
        "signed with the current key. Writes one JSON result per line, like 'signer sign'. "
        "Exit status 0 all re-issued, 1 any rejected, 2 usage, connection or I/O error.",
    )
    reissue.add_argument("file", help="input file, or - for stdin")
    _add_signing_client_options(reissue)

    verify = commands.add_parser(
        "verify",
        help="verify HC1 strings against DSC PEMs and/or a server's trust list",
        description="Decodes and verifies each line (a bare HC1 string, or a JSON line with an "
        "'hc1' field) locally and writes one JSON line each: valid, kid, alg, iss, iat, exp, "
        "payload, or the reason it fails (prefix, base45, zlib, cose_structure, cwt_structure, "
        "unsupported_alg, unknown_kid, alg_key_mismatch, bad_signature, expired, "
        "not_yet_valid, dsc_expired, …). Exit status 1 when any line fails.",
    )
    verify.add_argument("file", help="input file, or - for stdin")
    verify.add_argument("--trust-dir", type=Path, help="directory of trusted DSC PEM files")
    verify.add_argument("--server", help="also trust the DSCs of this server (host:port)")
    _add_tls_client_options(verify)
    verify.add_argument(
        "--at",
        help="judge validity at this ISO 8601 instant (default: now), e.g. 2027-06-01T00:00Z",
    )
    verify.add_argument("--out", type=Path, help="write results here instead of stdout")
    verify.add_argument(
        "--schema",
        action="store_true",
        help="also check each DCC against the EU DCC JSON schema 1.3 (reason: schema)",
    )

    _add_bench_parser(commands)

    from signer.keys.cli_parser import add_devca_parser, add_keys_parser

    add_keys_parser(commands)
    add_devca_parser(commands)
    add_audit_parser(commands)

    _add_dev_tls_parser(commands)
    _add_health_parser(commands)
    return parser


def _add_bench_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure the raw HSM sign rate and end-to-end HC1 issuance in one run",
        description="Measures (a) raw python-pkcs11 signatures/s on the token with the same "
        "number of processes as HSM sessions and (b) end-to-end HC1 issuance through gRPC with "
        "realistic Vietnamese payloads from a load generator on this machine; prints certs/s, "
        "p50/p99 batch latency, server RSS and the ratio (b)/(a).",
    )
    bench.add_argument("--config", type=Path, help="TOML config (default: embedded dev defaults)")
    bench.add_argument(
        "--sessions", type=int, help="HSM sessions / signing workers (default: [hsm] sessions)"
    )
    bench.add_argument("--seconds", type=float, default=10.0, help="duration of the raw phase")
    bench.add_argument("--items", type=int, default=200_000, help="items in the end-to-end phase")
    bench.add_argument(
        "--batch", type=int, help="items per request (default 1000; 100 with --soak-minutes)"
    )
    bench.add_argument("--concurrency", type=int, default=8, help="requests in flight (8)")
    bench.add_argument(
        "--connections",
        type=int,
        help="client connections the requests in flight share, in turn (default: one each; 1 "
        "is one channel, as an ordinary gRPC client has)",
    )
    bench.add_argument(
        "--runs",
        type=int,
        default=1,
        help="repeat the end-to-end phase this many times on the same server and report each "
        "run, their median (the figure the ratio uses) and the largest deviation from it",
    )
    bench.add_argument(
        "--tls",
        action="store_true",
        help="serve with mutual TLS (dev TLS files in the bench's temporary directory) and "
        "connect with a client certificate: compare the ratio with a run without it",
    )
    bench.add_argument("--alg", choices=["ES256", "PS256"], default="ES256")
    bench.add_argument(
        "--stream-items",
        type=int,
        default=0,
        help="then send this many items through one SignStream, sampling server RSS (0 = skip)",
    )
    bench.add_argument(
        "--unary-calls",
        type=int,
        default=0,
        help="then measure server CPU per one-item SignBatch against a bare grpc.aio call "
        "(this many calls each; 0 = skip)",
    )
    bench.add_argument(
        "--fairness",
        type=int,
        default=0,
        metavar="CALLS",
        help="with --tls, then measure fairness (issue 7 §4): client B's latency over this many "
        "calls one after the other (batches of 1 and of 100 items), alone and while client A "
        "(another certificate) floods the appliance with --concurrency batches of --batch "
        "(0 = skip)",
    )
    bench.add_argument(
        "--ledger",
        help="the server's issuance ledger: a postgresql:// URL (its database must be empty of "
        "the bench's chain) instead of a fresh SQLite file in the bench's temporary directory",
    )
    bench.add_argument("--json", type=Path, help="also write the figures as JSON here")
    _add_soak_options(bench)


def _add_dev_tls_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev_tls = commands.add_parser(
        "dev-tls",
        help="development TLS CA, server and client certificates (NOT FOR PRODUCTION)",
        description="NOT FOR PRODUCTION: writes a development TLS CA (ca.pem, ca.key; the CA "
        "key is a plain file, kept when it exists), a server certificate for 127.0.0.1, ::1 "
        "and localhost (server.pem, server.key) and a client certificate per --client NAME "
        "(clients/NAME.pem, clients/NAME.key, CN=NAME), then prints the matching [tls] config "
        "and client options.",
    )
    dev_tls.add_argument("--out", type=Path, required=True, help="directory for the files")
    dev_tls.add_argument(
        "--client", action="append", default=[], metavar="NAME", help="a client (repeatable)"
    )
    dev_tls.add_argument(
        "--days", type=int, default=30, help="server and client validity (default 30)"
    )


def _add_soak_options(bench: argparse.ArgumentParser) -> None:
    """``signer bench --soak-minutes`` (issue 9 §11, docs/soak.md)."""
    soak = bench.add_argument_group(
        "soak (issue 9 §11)",
        "with --soak-minutes the bench measures capacity, then runs at --load of it for that "
        "long, reporting errors (must be 0), latency percentiles and the RSS of every server "
        "process over time",
    )
    soak.add_argument("--soak-minutes", type=float, help="run a soak of this many minutes")
    soak.add_argument("--load", type=float, default=0.8, help="fraction of capacity (0.8)")
    soak.add_argument(
        "--capacity-seconds", type=float, default=30.0, help="how long to measure capacity (30)"
    )
    soak.add_argument(
        "--window", type=float, default=30.0, help="seconds per report line and RSS sample (30)"
    )
    soak.add_argument(
        "--max-in-flight", type=int, default=64, help="batches outstanding at most (64)"
    )
    soak.add_argument(
        "--max-rss-growth-mib",
        type=float,
        default=32.0,
        help="fail when a server process grows more than this after the first window (32)",
    )


def _add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )


def _version() -> str:
    """The installed package's version (pyproject.toml), not a second copy of it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hcert-signer")
    except PackageNotFoundError:
        return "unknown (not installed as a package)"


def _add_health_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from signer import health

    command = commands.add_parser(
        "health",
        help="ask a running appliance whether it is SERVING (grpc.health.v1)",
        description="Calls grpc.health.v1.Health/Check on ADDR and prints the status. Exit "
        "status 0 when SERVING, 1 when the appliance answers anything else (NOT_SERVING, "
        "SERVICE_UNKNOWN), 2 when nothing answers (not listening, TLS refused, timeout). "
        "--ca, --cert, --key and --server-name default to $HCERT_HEALTH_CA, "
        "$HCERT_HEALTH_CERT, $HCERT_HEALTH_KEY and $HCERT_HEALTH_SERVER_NAME when set.",
    )
    health.add_health_options(command)
    _add_tls_client_options(command)
    command.set_defaults(**health.environment_defaults())


def _add_serve_overrides(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--sessions", type=int, help="HSM sessions = signing workers (0 = one per usable core)"
    )
    serve.add_argument("--tls-cert", help="server certificate chain (PEM); overrides [tls] cert")
    serve.add_argument("--tls-key", help="server private key (PEM); overrides [tls] key")
    serve.add_argument(
        "--client-ca", help="CA of client certificates (mutual TLS); overrides [tls] client_ca"
    )
    serve.add_argument(
        "--ledger",
        help="the issuance ledger: a SQLite file or a postgresql:// URL; overrides [ledger]",
    )
    serve.add_argument("--ledger-chain", help="this appliance's chain; overrides [ledger] chain")


def _add_tls_client_options(command: argparse.ArgumentParser) -> None:
    """``--ca/--cert/--key``, the same for every command that talks to a server."""
    command.add_argument(
        "--ca", type=Path, metavar="FILE", help="CA of the server's certificate: dial with TLS"
    )
    command.add_argument(
        "--cert", type=Path, metavar="FILE", help="client certificate for mutual TLS (with --key)"
    )
    command.add_argument("--key", type=Path, metavar="FILE", help="the client certificate's key")


def _add_signing_client_options(command: argparse.ArgumentParser) -> None:
    """The options ``sign`` and ``reissue`` share."""
    command.add_argument(
        "--server", default=DEFAULT_SERVER, help=f"host:port (default {DEFAULT_SERVER})"
    )
    command.add_argument("--out", type=Path, help="write results here instead of stdout")
    command.add_argument("--batch", type=int, default=500, help="items per request (default 500)")
    command.add_argument(
        "--alg", choices=["ES256", "PS256"], default="", help="preferred algorithm"
    )
    command.add_argument("--quiet", action="store_true", help="no progress output")
    command.add_argument(
        "--resume",
        action="store_true",
        help="carry on from --out: keep its whole lines, drop a cut-off last line, and send "
        "only the input lines it does not answer yet",
    )
    command.add_argument(
        "--qr",
        choices=["png", "svg", "png,svg"],
        help="also write each certificate's QR code (alphanumeric, ECC Q) into --qr-dir",
    )
    command.add_argument("--qr-dir", type=Path, default=Path("qr"), help="default: ./qr")
    _add_tls_client_options(command)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "sign":
            from signer.client_commands import run_sign

            return run_sign(args)
        if args.command == "validate":
            from signer.validate import run_validate

            return run_validate(args)
        if args.command == "trust-list":
            from signer.client_commands import run_trust_list

            return run_trust_list(args)
        if args.command == "reissue":
            from signer.client_commands import run_reissue

            return run_reissue(args)
        if args.command == "verify":
            from signer.client_commands import run_verify

            return run_verify(args)
        if args.command == "bench":
            from signer.bench import run

            return run(args)
        if args.command == "keys":
            from signer.keys import cli as keys_cli

            return keys_cli.run(args)
        if args.command == "dev-ca":
            from signer.keys import devca_cli

            return devca_cli.run(args)
        if args.command == "dev-tls":
            return _dev_tls(args)
        if args.command == "health":
            from signer import health

            return health.run(args)
        if args.command == "audit":
            from signer.ledger import cli as ledger_cli

            return ledger_cli.run(args)
    except SignerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # I/O after the files were opened (disk full, device gone): exit 2
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    return 2


def _serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from signer.config import config_checked
    from signer.front.server import serve

    config = load_config(args.config)
    sections = {
        "server": (
            ("host", args.host),
            ("metrics_host", args.metrics_host),
            ("port", args.port),
            ("metrics_port", args.metrics_port),
        ),
        "hsm": (("sessions", args.sessions),),
        "tls": (("cert", args.tls_cert), ("key", args.tls_key), ("client_ca", args.client_ca)),
        "ledger": (*_ledger_override(args.ledger), ("chain", args.ledger_chain)),
    }
    for section, pairs in sections.items():
        overrides = {k: v for k, v in pairs if v is not None}
        if overrides:
            config = replace(config, **{section: replace(getattr(config, section), **overrides)})
    config = config_checked(config, "command line")
    return serve(config, ready_file=args.ready_file, say=lambda line: print(line, flush=True))


def _ledger_override(target: str | None) -> tuple[tuple[str, str | None], ...]:
    """``--ledger``: a URL replaces [ledger] url and a path [ledger] path, the other cleared."""
    from signer.ledger.store import is_postgres

    if target is None:
        return ()
    return (
        (("url", target), ("path", "")) if is_postgres(target) else (("path", target), ("url", ""))
    )


def _dev_tls(args: argparse.Namespace) -> int:
    from signer.devtls import describe, write_dev_tls

    print(describe(write_dev_tls(args.out, args.client, days=args.days)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
