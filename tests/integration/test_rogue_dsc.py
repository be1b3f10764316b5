"""A rogue key never signs (issue 8): two officers, misled by a config that trusts a throw-away
CA, generate a key, get its DSC from that CA, import and activate it through the normal dual
control — and the running appliance, whose ``[issuer] csca`` is the real (dev) CSCA, leaves it
unlisted. Every certificate of a batch signed afterwards verifies under the real DSC with pycose
(tests/independent.py), and the rogue kid appears nowhere. Without the chain check the rogue
key, the most recently activated ES256 key, would sign them all.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer.api.v1 import signer_pb2 as pb
from signer.bench.payloads import vaccination_payloads
from signer.domain import CertType
from signer.keys.devca import DevCsca, issue_from_csr
from tests.conftest import require_softhsm, start_appliance, stop_appliance
from tests.independent import hc1_verifies
from tests.integration.helpers import dual_control, items, keys_cli, kid_of_der, stub, wait_until

ROGUE = "rogue-dsc"
REAL = "dev-dsc-es256"


@pytest.mark.timeout(300)
def test_a_dsc_from_a_ca_not_configured_never_signs(tmp_path: Path) -> None:
    require_softhsm()
    appliance, process = start_appliance(tmp_path / "a", workers=2, key_algorithms=("ES256",))
    try:
        dev = tmp_path / "a" / "dev"
        rogue_ca = DevCsca.load_or_create(tmp_path / "rogue-ca", "VN")
        # The officers' own config: the appliance's, but trusting the throw-away CA.
        officer_config = tmp_path / "officer.toml"
        officer_config.write_text(
            appliance.config_path.read_text()
            + f'\n[issuer]\ncsca = ["{tmp_path / "rogue-ca" / "dev-csca.pem"}"]\n'
        )
        keys_cli(officer_config, "generate", "--label", ROGUE, "--alg", "ES256")
        csr_path = tmp_path / "rogue.csr"
        keys_cli(
            officer_config, "csr", "--label", ROGUE, "--subject", "CN=VN DSC rogue,C=VN",
            "--out", str(csr_path),
        )  # fmt: skip
        now = dt.datetime.now(dt.UTC)
        rogue_dsc = issue_from_csr(
            rogue_ca,
            x509.load_pem_x509_csr(csr_path.read_bytes()),
            tuple(CertType),
            now - dt.timedelta(hours=1),
            now + dt.timedelta(days=365),
        )
        dsc_path = tmp_path / "rogue.pem"
        dsc_path.write_bytes(rogue_dsc.public_bytes(serialization.Encoding.PEM))
        officers = dev / "officers"
        dual_control(officer_config, officers, "import-cert", "--label", ROGUE, str(dsc_path))
        dual_control(officer_config, officers, "activate", "--label", ROGUE)

        log = tmp_path / "a" / "serve.log"
        refused = f"key '{ROGUE}': DSC not listed: it does not chain to a configured CSCA"
        wait_until(
            lambda: True if log.read_text().count(refused) >= 2 else None,  # both workers
            timeout=60,
            what="both workers to refuse the rogue DSC",
        )
        rogue_kid = kid_of_der(rogue_dsc.public_bytes(serialization.Encoding.DER))
        trust = {e.label: e for e in appliance.trust_list()}
        assert ROGUE not in trust and all(e.kid != rogue_kid for e in trust.values())
        real = x509.load_der_x509_certificate(trust[REAL].certificate_der)

        payloads = vaccination_payloads(200, seed=8)
        response = stub(appliance.address).SignBatch(
            pb.SignBatchRequest(items=items(payloads, "rogue")), timeout=60
        )
        signed = [r.signed for r in response.results if r.HasField("signed")]
        assert len(signed) == len(payloads)
        assert {s.kid for s in signed} == {trust[REAL].kid}
        assert all(hc1_verifies(s.hc1, real) for s in signed)
        assert not any(hc1_verifies(s.hc1, rogue_dsc) for s in signed)
    finally:
        stop_appliance(process)
