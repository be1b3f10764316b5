"""Shared helpers for the integration tests: channels, items, COSE surgery, metrics, processes.

Nothing here verifies a signature with project code: tampering re-encodes with cbor2, zlib and
the PyPI ``base45`` package (``tests/independent.py`` takes the strings apart the same way).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import base45 as pypi_base45
import cbor2
import grpc
import psutil
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from signer.api.v1 import signer_pb2 as pb
from signer.api.v1 import signer_pb2_grpc as pb_grpc
from signer.hcert.verify import TrustedDsc, TrustStore
from tests.independent import cose_bytes, untag

if TYPE_CHECKING:
    from signer.devtls import DevTls
    from tests.conftest import Appliance

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]

_MAX_MESSAGE = 64 << 20
DAY = 86400

AlgValue: TypeAlias = pb.Algorithm.ValueType

#: The COSE algorithm identifiers (HCERT.md §5), written out here rather than imported.
COSE_ALG: dict[AlgValue, int] = {pb.ALGORITHM_ES256: -7, pb.ALGORITHM_PS256: -37}
SIGNATURE_LENGTH: dict[AlgValue, int] = {pb.ALGORITHM_ES256: 64, pb.ALGORITHM_PS256: 256}


#: A realistic rapid-antigen test certificate (PAYLOAD.md, value sets 2.12.0).
TEST_PAYLOAD: dict[str, Any] = {
    "ver": "1.3.0",
    "nam": {"fn": "Trần", "fnt": "TRAN", "gn": "Văn Đức", "gnt": "VAN<DUC"},
    "dob": "1990-02-11",
    "t": [
        {
            "tg": "840539006",
            "tt": "LP217198-3",
            "ma": "1232",
            "sc": "2021-10-01T08:30:00+07:00",
            "tr": "260415000",
            "tc": "Bệnh viện Bạch Mai",
            "co": "VN",
            "is": "Bộ Y tế Việt Nam (Ministry of Health of Viet Nam)",
            "ci": "URN:UVCI:01:VN:7QK2M4TDP9XHAF1C",
        }
    ],
}


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
        ],
    )


def stub(address: str) -> pb_grpc.SignerStub:
    return pb_grpc.SignerStub(channel(address))


def to_json(payload: Any, *, ascii_only: bool = False) -> str:
    return json.dumps(payload, ensure_ascii=ascii_only)


def items(payloads: Iterable[Any], prefix: str) -> list[pb.SignItem]:
    return [
        pb.SignItem(id=f"{prefix}-{i}", payload_json=to_json(p)) for i, p in enumerate(payloads)
    ]


def kid_of_der(der: bytes) -> bytes:
    """SHA-256 over the DSC DER, first 8 bytes (HCERT.md §4), computed here, not imported."""
    return hashlib.sha256(der).digest()[:8]


def trust_store(dscs: Iterable[x509.Certificate]) -> TrustStore:
    return TrustStore(TrustedDsc.from_certificate(c) for c in dscs)


def sign_one(
    address: str, payload_json: str, alg: AlgValue = pb.ALGORITHM_UNSPECIFIED
) -> pb.ItemResult:
    response: pb.SignBatchResponse = stub(address).SignBatch(
        pb.SignBatchRequest(items=[pb.SignItem(id="one", payload_json=payload_json)], alg=alg),
        timeout=60,
    )
    assert len(response.results) == 1
    return response.results[0]


# --- COSE surgery ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CoseParts:
    """The four members of a COSE_Sign1, as cbor2 hands them back (HCERT.md §3)."""

    tagged: bool
    protected: bytes
    unprotected: Any
    payload: bytes
    signature: bytes

    @classmethod
    def of(cls, hc1: str) -> CoseParts:
        cose = cose_bytes(hc1)
        array = cbor2.loads(untag(cose))
        assert isinstance(array, list) and len(array) == 4, array
        protected, unprotected, payload, signature = array
        return cls(cose[:1] == b"\xd2", protected, unprotected, payload, signature)

    def header(self) -> Any:
        return cbor2.loads(self.protected)

    def claims(self) -> Any:
        return cbor2.loads(self.payload)

    def hc1(self) -> str:
        """Re-encode: tag 18 + CBOR array → zlib → PyPI base45 → ``HC1:``."""
        array = cbor2.dumps([self.protected, self.unprotected, self.payload, self.signature])
        cose = (b"\xd2" if self.tagged else b"") + array
        encoded = pypi_base45.b45encode(zlib.compress(cose, 9))
        text = encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)
        return "HC1:" + text

    def with_protected(self, header: dict[int, Any]) -> CoseParts:
        return replace(self, protected=cbor2.dumps(header))

    def with_claims(self, claims: dict[Any, Any]) -> CoseParts:
        return replace(self, payload=cbor2.dumps(claims))

    def with_payload_byte(self, offset: int, value: int) -> CoseParts:
        changed = bytearray(self.payload)
        changed[offset] = value
        return replace(self, payload=bytes(changed))

    def with_signature_bit_flipped(self, offset: int) -> CoseParts:
        changed = bytearray(self.signature)
        changed[offset] ^= 0x01
        return replace(self, signature=bytes(changed))


# --- metrics --------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics_port: int) -> Samples:
    """Every sample of the supervisor's merged /metrics, keyed by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    """The value of one sample, 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


# --- processes ------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting to be reaped."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def worker_pids(front: int) -> dict[int, int]:
    """The front's live signing workers (``python -m signer.workers FD INDEX``) by index; not
    the dev-setup child, not zombies waiting to be reaped."""
    found: dict[int, int] = {}
    for child in psutil.Process(front).children():
        try:
            command = child.cmdline()
            if "signer.workers" in command and child.status() != psutil.STATUS_ZOMBIE:
                found[int(command[-1])] = child.pid
        except psutil.NoSuchProcess:
            continue
    return found


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something other than None; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


# --- full file systems ----------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(directory: Path, size: str, what: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` (needs root, as CI has); under CI=true a
    refused mount fails the test instead of skipping it."""
    directory.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mount.returncode != 0:
        message = f"cannot mount a tmpfs for {what}: {mount.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Write filler until the file system refuses another byte; the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def signature_hash(hc1: str) -> bytes:
    """HCERT.md §9 SIGNATURE, computed here from the COSE bytes: r alone for ES256 (alg -7)."""
    parts = CoseParts.of(hc1)
    signature = parts.signature
    return hashlib.sha256(signature[:32] if parts.header()[1] == -7 else signature).digest()[:16]


# --- certificates signed outside the appliance ---------------------------------------------

_PAST_SIGNER = """
import json, sys, time
from signer.config import load_config
from signer.token import open_token
from signer.keys.csca import load_cscas
from signer.keys.roster import approval_policy
from signer.keys.registry import KeyRegistry
from signer.domain import CertType
config = load_config(sys.argv[1])
token = open_token(config)
registry = KeyRegistry(token, approval_policy(config, token), load_cscas(config))
now = time.time()
registry.refresh(now)
key = registry.select(CertType.VACCINATION, None, int(now), int(now) + 86400)
iat, exp = int(now) + int(sys.argv[3]), int(now) + int(sys.argv[4])
print(key.encoder.encode(json.loads(sys.argv[2]), "VN", iat, exp))
"""


def signed_in_hsm(appliance: Appliance, payload: Any, iat: int, exp: int) -> str:
    """A certificate the appliance's own key signed with the PIN, outside the appliance, with
    ``iat`` and ``exp`` this many seconds from now.

    Made in a fresh process that opens the appliance's token (this test process may already
    have SoftHSM loaded with another configuration)."""
    env = {
        **os.environ,
        "SOFTHSM2_CONF": str(appliance.directory / "dev" / "softhsm" / "softhsm2.conf"),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _PAST_SIGNER,
            str(appliance.config_path),
            json.dumps(payload),
            str(iat),
            str(exp),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


# --- officers at the CLI --------------------------------------------------------------------


def signer_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m signer.cli …`` as an operator would; its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "signer.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def keys_cli(config: Path, *args: str) -> dict[str, Any]:
    """Run ``signer keys …`` as an officer would; its --json output."""
    done = signer_cli("keys", *args, "--config", str(config), "--json")
    assert done.returncode == 0, f"signer keys {' '.join(args)} failed:\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return result


def dual_control(
    config: Path,
    officers: Path,
    command: str,
    *args: str,
    first: str = "dev-officer-a",
    second: str = "dev-officer-b",
) -> None:
    """Officer ``first`` proposes, ``second`` approves; the operation must have run."""
    proposal = keys_cli(config, command, *args, "--officer-key", str(officers / f"{first}.key.pem"))
    assert not proposal["executed"]
    done = keys_cli(
        config,
        "approve",
        proposal["proposal"],
        "--officer-key",
        str(officers / f"{second}.key.pem"),
    )
    assert done["executed"] and done["approved_by"] == sorted([first, second])


# --- the CLI ---------------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``signer ARGS…`` as a user runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "signer.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def bench_config(directory: Path) -> Path:
    """A dev appliance of its own under ``directory`` for ``signer bench``, whose load (a client
    without a policy entry) may sign."""
    config = directory / "signer.toml"
    config.write_text(
        f'[hsm]\npin_env = ""\n[dev]\nbootstrap = true\ndirectory = "{directory / "dev"}"\n'
        'key_algorithms = ["ES256"]\n[policy]\ndefault = "issuer"\n'
    )
    return config


def mutual_tls(tls: DevTls) -> str:
    """The ``[tls]`` section of an appliance serving these dev TLS files, client certificates
    required."""
    return f'[tls]\ncert = "{tls.server_cert}"\nkey = "{tls.server_key}"\nclient_ca = "{tls.ca}"\n'


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def ledger_records(appliance_dir: Path) -> int:
    """How many records the dev appliance's issuance ledger holds, as ``signer audit show``
    prints them (one JSON line each)."""
    ledger = appliance_dir / "dev" / "ledger.sqlite"
    shown = run_cli("audit", "show", "--ledger", str(ledger), timeout=120)
    assert shown.returncode == 0, shown.stderr
    return sum(
        1
        for line in shown.stdout.splitlines()
        if line.startswith("{") and '"event":' not in line  # key events are no signatures
    )


# --- a network HSM: p11-kit server exporting SoftHSM over a unix socket ------------------------

P11KIT_CLIENT = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"


def require_p11kit() -> None:
    """``p11-kit server`` and its client module (Debian p11-kit, p11-kit-modules)."""
    import shutil

    if shutil.which("p11-kit") is None or not os.path.exists(P11KIT_CLIENT):
        message = "p11-kit is not installed (apt-get install p11-kit)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ", and under CI=true that is a failure, not a skip")
        pytest.skip(message)


class P11KitServer:
    """``p11-kit server`` exporting one SoftHSM token on a unix socket. :meth:`kill` ends it
    with every per-connection child (its own process group): the HSM is gone for the clients
    until :meth:`start` runs again on the same socket."""

    def __init__(self, socket_path: Path, softhsm_conf: Path, module: str, token: str) -> None:
        self.socket_path = socket_path
        self._env = {**os.environ, "SOFTHSM2_CONF": str(softhsm_conf)}
        self._command = [
            "p11-kit", "server", "-f", "--provider", module, "-n", str(socket_path),
            f"pkcs11:token={token}",
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"unix:path={self.socket_path}"

    def start(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            self._command,
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: True if self.socket_path.exists() else None, 30, "p11-kit server")

    def kill(self) -> None:
        import signal

        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None
