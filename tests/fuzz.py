"""The fuzz campaign (issue 9 §8): hostile requests on every RPC of a real appliance.

    python -m tests.fuzz --requests 100000 --seed 1            # starts its own appliance
    python -m tests.fuzz --requests 2000 --address 127.0.0.1:50051 --metrics-port 9464

Each request is one of: random bytes, a valid request with bytes flipped, cut or inserted, a
well-formed request with hostile field values (ids, payloads, option values, digests, kids,
verification times), or hostile ``HC1:`` strings (mutated good ones; base45, zlib and CBOR
garbage; zlib bombs; CWTs with hostile claims *signed by the appliance's own key* through
SignHash, so Verify and Reissue parse them past the signature check). SignStream gets a few
messages, a malformed one among them now and then. The appliance under test has hash-only
signing on, so SignHash is reached too.

It counts status codes per RPC, checks that every answered batch has exactly one result per item
in order, and fails (exit status 1) on any UNKNOWN, INTERNAL, UNAVAILABLE or DEADLINE_EXCEEDED,
any worker restart (``hcert_worker_restarts_total``), a front process that died, or a server log
that grew past ``MAX_LOG_GROWTH`` (one traceback per request would). Request generation is
seeded: the same seed sends the same requests (their order of arrival varies with threads).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import base45 as pypi_base45
import cbor2
import grpc

from signer.api.v1 import signer_pb2 as pb
from tests.integration.helpers import TEST_PAYLOAD, CoseParts, channel, sample, scrape

#: Hash-only signing on: SignHash is fuzzed, and it signs the hostile CWTs of the corpus.
FUZZ_CONFIG = "\n[hash_only]\nenabled = true\n"

RPCS = ("SignBatch", "SignStream", "Reissue", "Verify", "SignHash", "GetTrustList")
FAILING = frozenset({"UNKNOWN", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED"})
MAX_LOG_GROWTH = 64 << 10  # bytes: a few rate-limited lines, never one per request
CALL_TIMEOUT = 60.0

_REQUEST_TYPES: dict[str, Any] = {
    "SignBatch": pb.SignBatchRequest,
    "SignStream": pb.SignBatchRequest,
    "Reissue": pb.ReissueRequest,
    "Verify": pb.VerifyRequest,
    "SignHash": pb.SignHashRequest,
    "GetTrustList": pb.GetTrustListRequest,
}


def b45_text(data: bytes) -> str:
    encoded = pypi_base45.b45encode(data)
    return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)


@dataclass
class Corpus:
    """Good material to mutate: payloads, HC1 strings the appliance signed, and CWTs with hostile
    claims carrying a valid signature of the appliance's active ES256 key."""

    payloads: list[str]
    hc1s: list[str]
    signed_hostile: list[str]
    kid: bytes

    @classmethod
    def build(cls, address: str) -> Corpus:
        from signer.api.v1 import signer_pb2_grpc as pb_grpc

        stub = pb_grpc.SignerStub(channel(address))
        payloads = [_payload_variant(i) for i in range(8)]
        signed = stub.SignBatch(
            pb.SignBatchRequest(
                items=[pb.SignItem(id=str(i), payload_json=p) for i, p in enumerate(payloads)]
            ),
            timeout=60,
        )
        hc1s = [r.signed.hc1 for r in signed.results if r.HasField("signed")]
        assert hc1s, f"the appliance signed none of the corpus payloads: {signed}"
        kid, hostile = signed_by_appliance(address, list(hostile_claims()))
        return cls(payloads, hc1s, hostile, kid)


def signed_by_appliance(address: str, claims: list[bytes]) -> tuple[bytes, list[str]]:
    """HC1 strings around ``claims`` (CWT payload bytes, however hostile) with a valid ES256
    signature of the appliance's active key, made through SignHash (hash-only signing must be
    on): a verifier gets past the signature check and must parse them. Returns (kid, strings)."""
    from signer.api.v1 import signer_pb2_grpc as pb_grpc

    stub = pb_grpc.SignerStub(channel(address))
    entries = stub.GetTrustList(pb.GetTrustListRequest(), timeout=30).entries
    kid = next(
        e.kid for e in entries if e.state == pb.KEY_STATE_ACTIVE and e.alg == pb.ALGORITHM_ES256
    )
    protected = cbor2.dumps({1: -7, 4: kid})
    digests = [
        hashlib.sha256(cbor2.dumps(["Signature1", protected, b"", c])).digest() for c in claims
    ]
    answer = stub.SignHash(
        pb.SignHashRequest(
            kid=kid, items=[pb.HashItem(id=str(i), digest=d) for i, d in enumerate(digests)]
        ),
        timeout=60,
    )
    texts = []
    for claim, result in zip(claims, answer.results, strict=True):
        cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, claim, result.signature]))
        texts.append("HC1:" + b45_text(zlib.compress(cose, 9)))
    return kid, texts


def _payload_variant(index: int) -> str:
    payload = json.loads(json.dumps(TEST_PAYLOAD))
    payload["t"][0]["ci"] = f"URN:UVCI:01:VN:FUZZ{os.getpid()}X{time.time_ns()}X{index}"
    return json.dumps(payload, ensure_ascii=False)


def hostile_claims() -> Iterator[bytes]:
    """CWT payloads a verifier must refuse per item: non-text keys, integers past 64 bits,
    times past int64, floats that are no time, tags, wrong types, deep nesting, odd CBOR."""
    good = json.loads(json.dumps(TEST_PAYLOAD))
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: {**good, b"bytes key": 1}}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: {**good, 7: "int key"}}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: {**good, "ver": 2**100}}})
    yield cbor2.dumps({1: "VN", 6: 2**63, 4: 2**64, -260: {1: good}})
    yield cbor2.dumps({1: "VN", 6: -(2**70), 4: 2**80, -260: {1: good}})
    yield cbor2.dumps({1: "VN", 6: float("inf"), 4: float("nan"), -260: {1: good}})
    yield cbor2.dumps({1: "VN", 6: 1e300, 4: -1e300, -260: {1: good}})
    yield cbor2.dumps({1: "VN", 6: 1.5, 4: 2**40 + 0.5, -260: {1: good}})
    yield cbor2.dumps({1: b"VN", 6: 1, 4: 2, -260: {1: good}})
    yield cbor2.dumps({1: "VN", 6: True, 4: None, -260: {1: good}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: [good]}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: {**good, "t": [cbor2.CBORTag(1, 5)]}}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: {**good, "dob": float("nan")}}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: {**good, "nam": b"\xff\xfe"}}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: {**good, "v": good["t"]}}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: {}}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {}})
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: {"t": [{"x": [[[[]]]]}]} | {"ver": ""}}})
    yield cbor2.dumps([1, 2, 3])
    yield cbor2.dumps({1: "VN", 6: cbor2.CBORTag(1, 2**70), -260: {1: good}})
    yield b"\x81" * 200 + b"\x00"  # nesting past the decoder's limit
    yield b"\xa2\x01\x62VN\x01\x62VN"  # a repeated map key
    yield b"\xbf\x01\x62VN\xff"  # an indefinite-length map
    yield b"\xa4\x01"  # truncated
    yield cbor2.dumps({1: "VN", 6: 1, 4: 2**40, -260: {1: good}}) + b"\x00"  # trailing bytes


class Generator:
    """Seeded requests: ``next()`` returns (rpc, list of serialised messages)."""

    def __init__(self, seed: int, corpus: Corpus) -> None:
        self._random = random.Random(seed)
        self._corpus = corpus

    def next(self) -> tuple[str, list[bytes]]:
        r = self._random
        rpc = r.choice(RPCS)
        if rpc == "SignStream":
            return rpc, [self._message("SignStream") for _ in range(r.randint(1, 4))]
        return rpc, [self._message(rpc)]

    def _message(self, rpc: str) -> bytes:
        r = self._random
        kind = r.random()
        if kind < 0.10:
            return r.randbytes(r.choice((0, 1, 5, 50, 500, 3000)))
        message: bytes = self._hostile(rpc).SerializeToString()
        if kind < 0.35 and message:
            return self._mutate(message)
        return message

    def _mutate(self, data: bytes) -> bytes:
        r = self._random
        out = bytearray(data)
        for _ in range(r.randint(1, 6)):
            op = r.random()
            at = r.randrange(len(out) + 1)
            if op < 0.4 and out:
                out[min(at, len(out) - 1)] = r.randrange(256)
            elif op < 0.6:
                out[at:at] = r.randbytes(r.randint(1, 8))
            elif op < 0.8:
                del out[at : at + r.randint(1, 8)]
            else:
                out = out[:at]
        return bytes(out)

    def _hostile(self, rpc: str) -> Any:
        r = self._random
        count = r.choice((0, 1, 1, 2, 3, 5, 10, 40)) if r.random() > 0.01 else 300
        if rpc in ("SignBatch", "SignStream"):
            request = pb.SignBatchRequest(
                items=[
                    pb.SignItem(id=self._id(), payload_json=self._payload()) for _ in range(count)
                ],
                alg=self._alg(),
                validate_only=r.random() < 0.5,
            )
            self._output(request.output, count)
            return request
        if rpc in ("Reissue", "Verify"):
            items = [(self._id(), self._hc1()) for _ in range(count)]
            if rpc == "Reissue":
                reissue = pb.ReissueRequest(
                    items=[pb.ReissueItem(id=i, hc1=h) for i, h in items], alg=self._alg()
                )
                self._output(reissue.output, count)
                return reissue
            return pb.VerifyRequest(
                items=[pb.VerifyItem(id=i, hc1=h) for i, h in items], at=self._at()
            )
        if rpc == "SignHash":
            kid = self._corpus.kid if r.random() < 0.7 else r.randbytes(r.choice((0, 8, 300)))
            digest_lengths = (32, 32, 32, 0, 31, 33, 64, 5000)
            return pb.SignHashRequest(
                kid=kid,
                items=[
                    pb.HashItem(id=self._id(), digest=r.randbytes(r.choice(digest_lengths)))
                    for _ in range(count)
                ],
            )
        return pb.GetTrustListRequest()

    def _id(self) -> str:
        r = self._random
        if r.random() < 0.01:
            return "x" * r.choice((512, 4000, 100_000))
        return r.choice(
            (
                "",
                str(r.randrange(10**6)),
                "é✓\u0000\U0001f600",
                "".join(chr(r.randrange(0x20, 0xD7FF)) for _ in range(r.randint(1, 20))),
            )
        )

    def _alg(self) -> Any:  # an Algorithm, or a number the enum does not know
        r = self._random
        if r.random() < 0.05:
            return r.choice((3, -1, 2**31 - 1))
        return r.choice((0, 1, 2))

    def _at(self) -> int:
        r = self._random
        if r.random() < 0.05:
            return r.choice((-1, 2**62, -(2**63), 2**63 - 1, 253402300800))
        return r.choice((0, 0, 1, 1_700_000_000, 4_000_000_000, 253402300799))

    def _output(self, output: Any, count: int) -> None:
        r = self._random
        output.qr_scale = r.choice((0, 1, 4, 32, 33, 1500, 2**32 - 1))
        # QR codes cost ~40 ms each: asked for rarely and for small batches only.
        if count <= 2 and r.random() < 0.05:
            output.qr_png = r.random() < 0.7
            output.qr_svg = not output.qr_png or r.random() < 0.3

    def _payload(self) -> str:
        r = self._random
        good = r.choice(self._corpus.payloads)
        choice = r.random()
        if choice < 0.25:
            return good  # signed once, then duplicates its UVCI in the ledger: still one result
        if choice < 0.45:
            return self._json_mutation(good)
        if choice < 0.6:
            text = list(good)
            for _ in range(r.randint(1, 5)):
                text[r.randrange(len(text))] = chr(r.randrange(0x20, 0x2FF))
            return "".join(text)
        depth = r.choice((10, 100, 1000, 5000))
        return r.choice(
            (
                "[" * depth + "]" * depth,
                '{"a":' * depth + "1" + "}" * depth,
                "1e999999",
                "123456789012345678901234567890123456789",
                '{"ver": NaN}',
                '"\\ud800"',
                '{"nam": "\\udfff\\ud800"}',
                "",
                "null",
                "x" * r.choice((100, 16384, 16385, 100_000)),
                good[: r.randrange(len(good))],
            )
        )

    def _json_mutation(self, good: str) -> str:
        r = self._random
        payload = json.loads(good)
        target: Any = payload
        for _ in range(r.randint(0, 3)):
            if isinstance(target, dict) and target:
                key = r.choice(list(target))
                if not isinstance(target[key], dict | list) or not target[key]:
                    break
                target = target[key]
            elif isinstance(target, list) and target:
                inner = r.choice(target)
                if not isinstance(inner, dict | list) or not inner:
                    break
                target = inner
        value: Any = r.choice(
            (None, True, 2**70, -(2**63), 1.5, 1e308, "", "9" * 200, [], {}, [[[[]]]],
             "\u202e\u0000", "URN:UVCI:01:VN:" + "A" * 100)
        )  # fmt: skip
        if isinstance(target, dict) and target:
            target[r.choice(list(target))] = value
        elif isinstance(target, dict):
            target["x"] = value
        return json.dumps(payload, ensure_ascii=r.random() < 0.5)

    def _hc1(self) -> str:
        r = self._random
        corpus = self._corpus
        choice = r.random()
        if choice < 0.2:
            return r.choice(corpus.hc1s)  # a Reissue signs it again: fine
        if choice < 0.45:
            return r.choice(corpus.signed_hostile)
        if choice < 0.6:
            text = list(r.choice(corpus.hc1s))
            for _ in range(r.randint(1, 4)):
                text[r.randrange(4, len(text))] = r.choice(
                    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
                )
            return "".join(text)  # fmt: skip
        if choice < 0.7:
            return "HC1:" + b45_text(r.randbytes(r.randint(0, 300)))
        if choice < 0.8:
            return "HC1:" + b45_text(zlib.compress(r.randbytes(r.randint(0, 300))))
        if choice < 0.85:
            parts = CoseParts.of(r.choice(corpus.hc1s))
            return parts.with_payload_byte(r.randrange(len(parts.payload)), r.randrange(256)).hc1()
        if choice < 0.9:
            bomb = zlib.compress(b"\0" * r.choice((70_000, 1 << 20, 8 << 20)), 9)
            return "HC1:" + b45_text(bomb)
        return r.choice(
            ("", "HC1:", "HC2:ABC", "hc1:" + corpus.hc1s[0][4:], "HC1:" + "Z" * 9000,
             "HC1:\u0100\u0100", "HC1:GGW", "HC1:::::", corpus.hc1s[0] + "\r\n",
             " " + corpus.hc1s[0])
        )  # fmt: skip


@dataclass
class Report:
    requests: int = 0
    seconds: float = 0.0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    restarts: float = 0.0
    front_alive: bool = True
    log_growth: int = 0

    def failures(self) -> list[str]:
        found = [
            f"{count} × {code} on {rpc}"
            for (rpc, code), count in sorted(self.counts.items())
            if code in FAILING
        ]
        found += self.mismatches[:10]
        if self.restarts:
            found.append(f"{self.restarts:g} worker restart(s)")
        if not self.front_alive:
            found.append("the front process died")
        if self.log_growth > MAX_LOG_GROWTH:
            found.append(f"the server log grew by {self.log_growth} bytes (> {MAX_LOG_GROWTH})")
        return found

    def text(self) -> str:
        by_code: Counter[str] = Counter()
        for (_, code), count in self.counts.items():
            by_code[code] += count
        lines = [
            f"{self.requests} requests in {self.seconds:.1f} s "
            f"({self.requests / max(self.seconds, 1e-9):.0f}/s)",
            "by status: " + ", ".join(f"{c} {n}" for c, n in by_code.most_common()),
        ]
        for rpc in RPCS:
            codes = {c: n for (r, c), n in self.counts.items() if r == rpc}
            lines.append(f"  {rpc:13} " + ", ".join(f"{c} {n}" for c, n in sorted(codes.items())))
        lines.append(
            f"worker restarts {self.restarts:g}, front alive {self.front_alive}, "
            f"server log grew {self.log_growth} bytes"
        )
        failures = self.failures()
        lines.append("FAILED: " + "; ".join(failures) if failures else "no failures")
        return "\n".join(lines)


def _check_answer(rpc: str, sent: bytes, answer: bytes) -> str | None:
    """Exactly one result per item, in order, for every batch answered OK."""
    request = _REQUEST_TYPES[rpc]()
    request.ParseFromString(sent)  # it parsed on the server, so it parses here
    if rpc == "GetTrustList":
        return None
    response = (
        pb.VerifyResponse
        if rpc == "Verify"
        else pb.SignHashResponse
        if rpc == "SignHash"
        else pb.SignBatchResponse
    ).FromString(answer)
    ids = [i.id for i in request.items]
    got = [r.id for r in response.results]
    if ids != got:
        return f"{rpc}: {len(ids)} items answered with {len(got)} results (or out of order)"
    if any(not r.WhichOneof("outcome") for r in getattr(response, "results", [])
           if rpc != "Verify"):  # fmt: skip
        return f"{rpc}: a result with neither outcome"
    return None


def run_campaign(
    address: str,
    metrics_port: int,
    requests: int,
    seed: int,
    *,
    threads: int = 8,
    max_seconds: float = 3600.0,
    log_file: Path | None = None,
    front_alive: Callable[[], bool] = lambda: True,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Send ``requests`` generated requests (or as many as ``max_seconds`` allow)."""
    corpus = Corpus.build(address)
    generator = Generator(seed, corpus)
    lock = threading.Lock()
    report = Report()
    restarts_before = sample(scrape(metrics_port), "hcert_worker_restarts_total")
    log_before = log_file.stat().st_size if log_file is not None else 0
    ident: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    chan = channel(address)
    unary = {
        rpc: chan.unary_unary(
            f"/hcert.signer.v1.Signer/{rpc}", request_serializer=ident, response_deserializer=ident
        )
        for rpc in RPCS
        if rpc != "SignStream"
    }
    stream = chan.stream_stream(
        "/hcert.signer.v1.Signer/SignStream", request_serializer=ident, response_deserializer=ident
    )
    started = time.monotonic()
    deadline = started + max_seconds

    taken = 0

    def one() -> bool:
        nonlocal taken
        with lock:
            if taken >= requests or time.monotonic() > deadline:
                return False
            taken += 1
            rpc, messages = generator.next()
        problem = None
        try:
            if rpc == "SignStream":
                answers = list(stream(iter(messages), timeout=CALL_TIMEOUT))
                if len(answers) != len(messages):
                    problem = f"SignStream: {len(messages)} messages, {len(answers)} answers"
                for sent, answer in zip(messages, answers, strict=False):
                    problem = problem or _check_answer(rpc, sent, answer)
            else:
                problem = _check_answer(
                    rpc, messages[0], unary[rpc](messages[0], timeout=CALL_TIMEOUT)
                )
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
        with lock:
            report.requests += 1
            report.counts[(rpc, code)] += 1
            if problem is not None:
                report.mismatches.append(problem)
            if progress is not None and report.requests % 10_000 == 0:
                progress(f"{report.requests} requests, {time.monotonic() - started:.0f} s")
        return True

    def loop() -> None:
        while one():
            pass

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(loop) for _ in range(threads)]:
            future.result()
    report.seconds = time.monotonic() - started
    report.front_alive = front_alive()
    if report.front_alive:
        report.restarts = (
            sample(scrape(metrics_port), "hcert_worker_restarts_total") - restarts_before
        )
    if log_file is not None:
        report.log_growth = log_file.stat().st_size - log_before
    chan.close()
    return report


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--workers", type=int, default=2, help="signing workers of the appliance")
    parser.add_argument("--address", help="fuzz this running appliance (HOST:PORT) instead")
    parser.add_argument("--metrics-port", type=int, help="with --address: its metrics port")
    parser.add_argument("--log", type=Path, help="with --address: its log file, to measure")
    args = parser.parse_args(argv)
    machine = (
        f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )
    if args.address:
        if args.metrics_port is None:
            parser.error("--address needs --metrics-port")
        report = run_campaign(args.address, args.metrics_port, args.requests, args.seed,
                              threads=args.threads, max_seconds=args.max_seconds, log_file=args.log,
                              progress=say)  # fmt: skip
    else:
        from tests.conftest import start_appliance, stop_appliance, wait_serving

        directory = Path(tempfile.mkdtemp(prefix="hcert-fuzz-"))
        say(f"starting an appliance under {directory} …")
        appliance, process = start_appliance(directory, FUZZ_CONFIG, workers=args.workers)
        try:
            wait_serving(appliance)
            report = run_campaign(
                appliance.address, appliance.metrics_port, args.requests, args.seed,
                threads=args.threads, max_seconds=args.max_seconds,
                log_file=directory / "serve.log", front_alive=lambda: process.poll() is None,
                progress=say,
            )  # fmt: skip
        finally:
            stop_appliance(process)
            shutil.rmtree(directory, ignore_errors=True)
    print(f"python -m tests.fuzz --requests {args.requests} --seed {args.seed} "
          f"--threads {args.threads}  [{machine}]")  # fmt: skip
    print(report.text())
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
