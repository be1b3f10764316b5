"""Fairness against a real appliance (issue 7 §4): while one client has thousands of items queued,
another client's batch is served in turn, not behind them.

Two client certificates are two identities for the fair queue. The check is an order, not a
time: client A's eight batches of 1000 are queued (its first one already answered) when client B
sends a batch of 4; first come, first served would answer B after all of A's, the fair queue
answers B while most of A's are still being signed. B's certificates are checked with pycose.
(The latency figures of issue 7 §4 are a benchmark: ``signer bench --tls --fairness``.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from cryptography import x509

from signer.api.v1 import signer_pb2 as pb
from signer.api.v1 import signer_pb2_grpc as pb_grpc
from signer.bench.payloads import vaccination_payloads
from signer.client import channel as tls_channel
from signer.devtls import DevTls
from tests.conftest import Appliance, require_softhsm, start_appliance, stop_appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import mutual_tls, to_json

A_BATCHES, A_ITEMS = 8, 1000


@pytest.fixture(autouse=True)
def _softhsm() -> None:
    require_softhsm()


@pytest.fixture
def shared(tmp_path_factory: pytest.TempPathFactory, dev_tls: DevTls) -> Iterator[Appliance]:
    """A mutual-TLS appliance on which every client may issue."""
    config = f"""{mutual_tls(dev_tls)}
[policy]
default = "issuer"

[quotas]
items_per_second = 100000.0
burst = 100000
max_in_flight_items = 10000
total_in_flight_items = 20000
"""
    running, process = start_appliance(
        tmp_path_factory.mktemp("fair"), config, workers=2, key_algorithms=("ES256",)
    )
    try:
        yield running
    finally:
        stop_appliance(process)


def _batch(prefix: str, count: int, seed: int) -> pb.SignBatchRequest:
    payloads = vaccination_payloads(count, seed=seed)
    return pb.SignBatchRequest(
        items=[
            pb.SignItem(id=f"{prefix}{n}", payload_json=to_json(p)) for n, p in enumerate(payloads)
        ]
    )


def test_a_clients_batch_is_served_in_turn_while_another_has_thousands_queued(
    shared: Appliance, dev_tls: DevTls
) -> None:
    a = pb_grpc.SignerStub(tls_channel(shared.address, dev_tls.client_tls("issuer-a")))
    b = pb_grpc.SignerStub(tls_channel(shared.address, dev_tls.client_tls("reader-b")))
    trust = {e.kid: e for e in b.GetTrustList(pb.GetTrustListRequest(), timeout=30).entries}
    a_request, b_request = _batch("a", A_ITEMS, seed=81), _batch("b", 4, seed=82)

    answered: list[float] = []  # when each of A's batches was answered
    lock, first = threading.Lock(), threading.Event()

    def on_done(_: grpc.Future) -> None:
        with lock:
            answered.append(time.monotonic())
        first.set()

    calls = [a.SignBatch.future(a_request, timeout=300) for _ in range(A_BATCHES)]
    for call in calls:
        call.add_done_callback(on_done)
    assert first.wait(timeout=300)  # A's batches are all admitted, the first answered
    response = b.SignBatch(b_request, timeout=120)
    b_answered = time.monotonic()

    for call in calls:
        assert all(r.HasField("signed") for r in call.result().results)
    assert [r.id for r in response.results] == [f"b{n}" for n in range(4)]
    for result in response.results:
        assert result.HasField("signed"), result.rejected
        dsc = x509.load_der_x509_certificate(trust[result.signed.kid].certificate_der)
        assert hc1_verifies(result.signed.hc1, dsc)
    still_signing = sum(1 for at in answered if at > b_answered)
    # first come, first served: 0 (B behind all of A's 7,000 queued items); in turn: B's chunk
    # waits for the chunks at the workers only
    assert still_signing >= A_BATCHES // 2, (still_signing, answered, b_answered)
