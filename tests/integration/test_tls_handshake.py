"""Mutual TLS at the handshake, with a real grpc.aio server and the CLI's own channels (issue 7
§2): good clients are named by their certificate; no certificate, another CA's certificate and
an expired one never reach a handler; replaced files take effect without a restart."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from signer.client import ClientTls, channel
from signer.devtls import CLIENT_DNS_SUFFIX, CLIENT_URI_PREFIX, DevTls, write_dev_tls
from signer.front.tls import server_credentials
from tests.aio_server import HOLD, WHOAMI, AioTestServer, aio_test_server

TIMEOUT = 10.0


def whoami(address: str, tls: ClientTls | None) -> dict[str, str | None]:
    with channel(address, tls) as ch:
        answer: bytes = ch.unary_unary(WHOAMI)(b"", timeout=TIMEOUT)
    names: dict[str, str | None] = json.loads(answer)
    return names


def refused(address: str, tls: ClientTls | None) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught, channel(address, tls) as ch:
        ch.unary_unary(WHOAMI)(b"", timeout=TIMEOUT)
    code: grpc.StatusCode = caught.value.code()
    return code


@pytest.fixture(scope="module")
def mtls_server(dev_tls: DevTls) -> Iterator[AioTestServer]:
    with aio_test_server(server_credentials(dev_tls.tls_config())) as server:
        yield server


@pytest.mark.parametrize("name", ["issuer-a", "reader-b"])
def test_a_good_client_certificate_is_named_by_cn_and_sans(
    mtls_server: AioTestServer, dev_tls: DevTls, name: str
) -> None:
    assert whoami(mtls_server.address, dev_tls.client_tls(name)) == {
        "cn": name,
        "san_dns": name + CLIENT_DNS_SUFFIX,
        "san_uri": CLIENT_URI_PREFIX + name,
    }


@pytest.mark.parametrize("client", [None, "foreign", "expired"])
def test_refused_at_the_handshake_before_any_handler(
    mtls_server: AioTestServer, dev_tls: DevTls, client: str | None
) -> None:
    calls = mtls_server.calls
    assert refused(mtls_server.address, dev_tls.client_tls(client)) == grpc.StatusCode.UNAVAILABLE
    assert mtls_server.calls == calls


def test_plaintext_client_cannot_talk_to_a_tls_port(mtls_server: AioTestServer) -> None:
    calls = mtls_server.calls
    assert refused(mtls_server.address, None) == grpc.StatusCode.UNAVAILABLE
    assert mtls_server.calls == calls


def test_tls_without_client_ca_serves_clients_without_a_name(dev_tls: DevTls) -> None:
    with aio_test_server(server_credentials(dev_tls.tls_config(mutual=False))) as server:
        assert whoami(server.address, dev_tls.client_tls()) == dict.fromkeys(
            ("cn", "san_dns", "san_uri")
        )


def test_plaintext_server_gives_no_identity() -> None:
    with aio_test_server(None) as server:
        assert whoami(server.address, None) == dict.fromkeys(("cn", "san_dns", "san_uri"))


def _install(source: Path, target: Path) -> None:
    """Replace ``target`` atomically, as a certificate deployment should."""
    staging = target.with_suffix(".new")
    shutil.copyfile(source, staging)
    os.replace(staging, target)


def test_replaced_files_take_effect_for_new_connections_and_calls_in_flight_finish(
    tmp_path: Path,
) -> None:
    old = write_dev_tls(tmp_path / "old", ["issuer-a"])
    new = write_dev_tls(tmp_path / "new", ["issuer-n"])
    live = tmp_path / "live"
    live.mkdir()
    for path in (old.server_cert, old.server_key, old.ca):
        shutil.copy(path, live / path.name)
    served = replace(
        old, server_cert=live / "server.pem", server_key=live / "server.key", ca=live / "ca.pem"
    )
    with aio_test_server(server_credentials(served.tls_config())) as server:
        held = channel(server.address, old.client_tls("issuer-a"))
        try:
            result: list[bytes] = []
            call = threading.Thread(
                target=lambda: result.append(held.unary_unary(HOLD)(b"x", timeout=TIMEOUT))
            )
            call.start()
            assert server.held.wait(TIMEOUT)

            for source, target in (
                (new.server_key, served.server_key),
                (new.server_cert, served.server_cert),
                (new.ca, served.ca),
            ):
                _install(source, target)

            assert whoami(server.address, new.client_tls("issuer-n"))["cn"] == "issuer-n"
            assert refused(server.address, old.client_tls("issuer-a")) == (
                grpc.StatusCode.UNAVAILABLE
            )
            # the server's new certificate is trusted, but the old client CA no longer is
            old_client_new_ca = replace(old.client_tls("issuer-a"), ca=new.ca)
            assert refused(server.address, old_client_new_ca) == grpc.StatusCode.UNAVAILABLE
            server.release()
            call.join(TIMEOUT)
            assert result == [b"done:x"]
            # the old connection is still open and still serves
            answer = held.unary_unary(WHOAMI)(b"", timeout=TIMEOUT)
            assert json.loads(answer)["cn"] == "issuer-a"
        finally:
            held.close()


def test_files_that_do_not_load_keep_the_configuration_in_use(tmp_path: Path) -> None:
    dev = write_dev_tls(tmp_path / "dev", ["issuer-a"])
    other = write_dev_tls(tmp_path / "other", [])
    with aio_test_server(server_credentials(dev.tls_config())) as server:
        _install(other.server_cert, dev.server_cert)  # a certificate that is not the key's
        assert whoami(server.address, dev.client_tls("issuer-a"))["cn"] == "issuer-a"
        _install(other.server_key, dev.server_key)  # now the pair fits again: the new one
        assert refused(server.address, dev.client_tls("issuer-a")) == grpc.StatusCode.UNAVAILABLE
        assert (
            whoami(server.address, replace(dev.client_tls("issuer-a"), ca=other.ca))["cn"]
            == "issuer-a"
        )
