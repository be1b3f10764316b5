"""What the fuzz campaign sends (``tests.fuzz``): good material to mutate, hostile CWT claims
signed by the appliance's own key, and the seeded generator of requests for every RPC."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import base45 as pypi_base45
import cbor2

from signer.api.v1 import signer_pb2 as pb
from tests.integration.helpers import TEST_PAYLOAD, CoseParts, channel

RPCS = ("SignBatch", "SignStream", "Reissue", "Verify", "SignHash", "GetTrustList")


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
