"""``signer health ADDR``: one ``grpc.health.v1.Health/Check`` against a running appliance.

For Docker's HEALTHCHECK, Kubernetes exec probes and scripts (issue 11 §7). The answer is the
exit status: 0 SERVING, 1 anything else the service answered (NOT_SERVING, SERVICE_UNKNOWN,
UNKNOWN), 2 when there is no answer (connection refused, TLS handshake refused, timeout) or the
options are wrong. Under mutual TLS the probe needs a client certificate of the appliance's
client CA: health is open to every client that passed the handshake, whatever its role.

The TLS options default to the ``HCERT_HEALTH_*`` environment variables, so an image's
HEALTHCHECK can name no files and still work when the operator mounts a probe certificate.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import grpc

from signer.errors import BackendError, ConfigError

#: option → the environment variable that gives its default
ENVIRONMENT = {
    "ca": "HCERT_HEALTH_CA",
    "cert": "HCERT_HEALTH_CERT",
    "key": "HCERT_HEALTH_KEY",
    "server_name": "HCERT_HEALTH_SERVER_NAME",
}
DEFAULT_TIMEOUT = 5.0


def environment_defaults() -> dict[str, Path | str]:
    """Defaults for ``--ca/--cert/--key/--server-name`` from the set ``HCERT_HEALTH_*``."""
    defaults: dict[str, Path | str] = {}
    for option, variable in ENVIRONMENT.items():
        value = os.environ.get(variable, "")
        if value:
            defaults[option] = value if option == "server_name" else Path(value)
    return defaults


def check(
    address: str,
    *,
    service: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    server_name: str | None = None,
) -> str:
    """The serving status the appliance at ``address`` reports for ``service``, by name
    (``SERVING``, ``NOT_SERVING``, ``SERVICE_UNKNOWN``, ``UNKNOWN``). BackendError with one
    line when nothing answers within ``timeout``; ConfigError for wrong options."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from signer.client import ClientTls, channel

    if timeout <= 0:
        raise ConfigError(f"--timeout must be more than 0 seconds, not {timeout:g}")
    tls = ClientTls.from_options(ca, cert, key)
    if server_name:
        if tls is None:
            raise ConfigError("--server-name needs --ca: it names the server's TLS certificate")
        tls = replace(tls, server_name=server_name)
    request = health_pb2.HealthCheckRequest(service=service)
    try:
        with channel(address, tls) as ch:
            response = health_pb2_grpc.HealthStub(ch).Check(request, timeout=timeout)
    except grpc.RpcError as e:
        code = e.code() if isinstance(e, grpc.Call) else None
        if code == grpc.StatusCode.NOT_FOUND:
            return "SERVICE_UNKNOWN"  # the health servicer's answer for a service it does not know
        details = " ".join(str(e.details() if isinstance(e, grpc.Call) else e).split())
        name = code.name if code is not None else "?"
        raise BackendError(
            f"no health answer from {address} within {timeout:g} s ({name}: {details}); "
            "is the appliance running there, and do --ca/--cert/--key fit its TLS?"
        ) from e
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def add_health_options(command: argparse.ArgumentParser) -> None:
    """The options beside ``ADDR`` and the shared ``--ca/--cert/--key``."""
    command.add_argument("address", metavar="ADDR", help="the appliance's gRPC HOST:PORT")
    command.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help='the service to ask about (default "": the whole appliance; the same answer as '
        "hcert.signer.v1.Signer)",
    )
    command.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for the answer (default {DEFAULT_TIMEOUT:g})",
    )
    command.add_argument(
        "--server-name",
        metavar="NAME",
        help="the name the server's TLS certificate carries, when ADDR is not it (e.g. "
        "127.0.0.1:50051 from inside the pod)",
    )


def run(args: argparse.Namespace) -> int:
    status = check(
        args.address,
        service=args.service,
        timeout=args.timeout,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        server_name=args.server_name,
    )
    print(status)
    return 0 if status == "SERVING" else 1
