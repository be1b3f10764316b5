"""decode_hc1: every accepted shape (HCERT.md §3) and every failure reason, plus fuzzing."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cbor2
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.domain import CERT_TYPE_BY_GROUP, CertType
from signer.hcert import base45
from signer.hcert.decode import (
    DECODE_REASONS,
    MAX_INFLATED_BYTES,
    MAX_TEXT_CHARS,
    DecodeReason,
    HcertDecodeError,
    decode_claims,
    decode_cose,
    decode_hc1,
)
from tests.unit.hcert.conftest import DCC, ES256, Issuer, claims, sig_structure, to_hc1

KID2 = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def test_decodes_every_part(es256: Issuer) -> None:
    payload = claims(iat=1_700_000_000, exp=1_800_000_000)
    decoded = decode_hc1(es256.hc1(payload=payload))
    assert decoded.protected == {1: ES256, 4: es256.kid}
    assert decoded.unprotected == {}
    assert decoded.kid == es256.kid
    assert decoded.alg_id == ES256
    assert (decoded.iss, decoded.iat, decoded.exp) == ("XX", 1_700_000_000, 1_800_000_000)
    assert decoded.dcc == DCC
    assert decoded.claims == payload
    assert decoded.payload_bstr == cbor2.dumps(payload)
    assert len(decoded.signature) == 64
    assert decoded.sig_structure() == sig_structure(decoded.protected_bstr, decoded.payload_bstr)


@pytest.mark.parametrize("tagging", ["18", "61+18", "none"])
def test_accepts_each_tagging(es256: Issuer, tagging: Any) -> None:
    assert decode_hc1(es256.hc1(tagging=tagging)).dcc == DCC


@pytest.mark.parametrize(
    ("protected", "unprotected", "kid", "alg"),
    [
        ({1: ES256, 4: b"protectd"}, {}, b"protectd", ES256),
        ({1: ES256}, {4: KID2}, KID2, ES256),  # kid only unprotected (TD CO19)
        ({1: ES256, 4: b"protectd"}, {4: KID2}, b"protectd", ES256),  # protected wins (CO21/22)
        ({}, {1: ES256, 4: KID2}, KID2, ES256),  # h'' protected, both unprotected (CO20)
        ({4: KID2}, {1: -37}, KID2, -37),  # alg falls back to unprotected
        ({1: ES256, 4: KID2}, {1: -37}, KID2, ES256),
        ({1: ES256}, {}, None, ES256),
        ({4: KID2}, {}, KID2, None),
    ],
)
def test_header_resolution(
    es256: Issuer,
    protected: dict[int, Any],
    unprotected: dict[int, Any],
    kid: bytes | None,
    alg: int | None,
) -> None:
    decoded = decode_hc1(es256.hc1(protected=protected, unprotected=unprotected))
    assert (decoded.kid, decoded.alg_id) == (kid, alg)
    assert decoded.protected_bstr == (cbor2.dumps(protected) if protected else b"")


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r\n\r\n"])
def test_strips_line_endings_only(es256: Issuer, ending: str) -> None:
    text = es256.hc1()
    assert decode_hc1(text + ending) == decode_hc1(text)


def test_spaces_are_data_not_padding(es256: Issuer) -> None:
    text = es256.hc1()
    for broken in (text + " ", " " + text, text + " \n"):
        with pytest.raises(HcertDecodeError):
            decode_hc1(broken)


def _raw(cose: bytes) -> str:
    return to_hc1(cose)


def _bad_cose(*array: Any) -> str:
    return _raw(cbor2.dumps(list(array)))


def _payload(es256: Issuer, payload: Any) -> str:
    return es256.hc1(payload=cbor2.dumps(payload), signature=b"\x00" * 64)


GOOD_PROTECTED = cbor2.dumps({1: ES256, 4: KID2})
GOOD_PAYLOAD = cbor2.dumps(claims())


def _dangling(hc1: str) -> str:
    """Lengthen the base45 text so one character is left over (length ≡ 1 mod 3); the length of
    a fresh string varies with its random ECDSA signature, so pad to reach that remainder."""
    return hc1 + "A" * (1 + (-(len(hc1) - 4)) % 3)


def _nested(depth: int) -> bytes:
    """A claims map whose DCC nests ``depth`` arrays deep (CBOR bytes, built by hand)."""
    dcc = {**DCC, "x": 0}
    encoded = cbor2.dumps({**claims(), -260: {1: dcc}})
    # replace the trailing 0 of "x" with depth nested one-element arrays around 0
    assert encoded.endswith(b"\x61x\x00")
    return encoded[:-1] + b"\x81" * depth + b"\x00"


def _without(group: str) -> dict[str, Any]:
    return {k: v for k, v in DCC.items() if k != group}


def _entry(**fields: Any) -> dict[str, Any]:
    return {**DCC, "v": [{**DCC["v"][0], **fields}]}


_tag99 = cbor2.CBORTag(99, "x")


# (reason, builder of the text from the es256 issuer)
FAILURES: list[tuple[DecodeReason, Callable[[Issuer], str]]] = [
    (DecodeReason.PREFIX, lambda i: "HC2:" + i.hc1()[4:]),
    (DecodeReason.PREFIX, lambda i: "hc1:" + i.hc1()[4:]),
    (DecodeReason.PREFIX, lambda i: i.hc1()[4:]),
    (DecodeReason.PREFIX, lambda i: " " + i.hc1()),
    (DecodeReason.PREFIX, lambda i: ""),
    (DecodeReason.BASE45, lambda i: i.hc1()[:10] + "a" + i.hc1()[11:]),
    (DecodeReason.BASE45, lambda i: i.hc1() + "ü"),
    (DecodeReason.BASE45, lambda i: _dangling(i.hc1())),  # one character too many
    (DecodeReason.BASE45, lambda i: "HC1:::::"),  # a group above 0xFFFF
    (DecodeReason.ZLIB, lambda i: "HC1:" + base45.encode(i.cose())),  # not compressed (TD Z2)
    (DecodeReason.ZLIB, lambda i: "HC1:" + base45.encode(zlib.compress(i.cose())[:-10])),
    (DecodeReason.ZLIB, lambda i: "HC1:" + base45.encode(zlib.compress(i.cose()) + b"\x00")),
    (DecodeReason.ZLIB, lambda i: "HC1:"),
    (DecodeReason.TOO_LARGE, lambda i: "HC1:" + "0" * MAX_TEXT_CHARS),
    (DecodeReason.TOO_LARGE, lambda i: _raw(b"\x00" * (MAX_INFLATED_BYTES + 1))),  # zip bomb
    (DecodeReason.COSE_STRUCTURE, lambda i: _raw(b"\xff\xfe garbage")),
    (DecodeReason.COSE_STRUCTURE, lambda i: _raw(cbor2.dumps(7))),
    (DecodeReason.COSE_STRUCTURE, lambda i: _raw(i.cose() + b"\x00")),  # trailing byte
    (DecodeReason.COSE_STRUCTURE, lambda i: _raw(i.cose()[:-1])),  # truncated
    (DecodeReason.COSE_STRUCTURE, lambda i: _bad_cose(GOOD_PROTECTED, {}, GOOD_PAYLOAD)),
    (DecodeReason.COSE_STRUCTURE, lambda i: _bad_cose({1: ES256}, {}, GOOD_PAYLOAD, b"s")),
    (DecodeReason.COSE_STRUCTURE, lambda i: _bad_cose(cbor2.dumps([1]), {}, GOOD_PAYLOAD, b"s")),
    (DecodeReason.COSE_STRUCTURE, lambda i: _bad_cose(b"\xa1\x01", {}, GOOD_PAYLOAD, b"s")),
    (DecodeReason.COSE_STRUCTURE, lambda i: _bad_cose(GOOD_PROTECTED, [], GOOD_PAYLOAD, b"s")),
    (DecodeReason.COSE_STRUCTURE, lambda i: _bad_cose(GOOD_PROTECTED, {}, None, b"s")),
    (DecodeReason.COSE_STRUCTURE, lambda i: _bad_cose(GOOD_PROTECTED, {}, GOOD_PAYLOAD, "s")),
    # duplicate label in the protected header: {1: -7, 1: -7}
    (DecodeReason.COSE_STRUCTURE, lambda i: _bad_cose(b"\xa2\x01\x26\x01\x26", {}, b"", b"")),
    (DecodeReason.COSE_STRUCTURE, lambda i: i.hc1(protected={1: ES256, 4: "kid as text"})),
    (DecodeReason.COSE_STRUCTURE, lambda i: i.hc1(protected={1: "ES256", 4: KID2})),
    (DecodeReason.COSE_STRUCTURE, lambda i: i.hc1(protected={1: True, 4: KID2})),
    (DecodeReason.COSE_STRUCTURE, lambda i: _raw(cbor2.dumps(cbor2.CBORTag(98, [])))),
    (DecodeReason.COSE_STRUCTURE, lambda i: _raw(b"\xd8\x3d" + i.cose(tagging="none"))),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, [1, 2])),
    (DecodeReason.CWT_STRUCTURE, lambda i: i.hc1(payload=b"\xff")),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 6: math.nan})),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 4: math.inf})),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 4: -math.inf})),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 6: 2**63})),  # beyond int64
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 6: -(2**63) - 1})),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 4: 2**200})),  # a bignum
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 4: 1e300})),
    (DecodeReason.CWT_STRUCTURE, lambda i: i.hc1(payload=_nested(100))),  # deep nesting
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 4: "2030-01-01"})),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 4: True})),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), 1: 276})),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {1: "XX", 6: 1, 4: 2})),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), -260: {3: DCC}})),
    (DecodeReason.CWT_STRUCTURE, lambda i: _payload(i, {**claims(), -260: [DCC]})),
    # the -260/1 value must be a map with exactly one of v/t/r (vector CBO1: a byte string)
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=b"\x01garbage"))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc="text"))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=[DCC]))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=_without("v")))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc={**DCC, "t": []}))),
    # values JSON cannot carry, anywhere in the DCC
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc={**DCC, 7: "x"}))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=_entry(dn=2**64)))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=_entry(dn=-(2**63) - 1)))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=_entry(dn=math.nan)))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=_entry(dn=math.inf)))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=_entry(ci=b"bytes")))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=_entry(co=cbor2.undefined)))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=_entry(co=_tag99)))),
    (DecodeReason.HCERT_STRUCTURE, lambda i: _payload(i, claims(dcc=_entry(dt={1: 2})))),
]


@pytest.mark.parametrize(("reason", "build"), FAILURES)
def test_failure_reasons(
    es256: Issuer, reason: DecodeReason, build: Callable[[Issuer], str]
) -> None:
    with pytest.raises(HcertDecodeError) as caught:
        decode_hc1(build(es256))
    assert caught.value.reason is reason
    assert str(caught.value)


@pytest.mark.parametrize(
    ("iat", "exp", "read", "floats"),
    [
        (1_700_000_000.9, 1_800_000_000.5, (1_700_000_000, 1_800_000_000), 2),  # ES/HU vectors
        (1_700_000_000, 1_800_000_000.0, (1_700_000_000, 1_800_000_000), 1),
        (-0.5, 2**63 - 1, (-1, 2**63 - 1), 1),  # rounded down, not towards zero; int64 edge
        (-(2**63), 1.5, (-(2**63), 1), 1),
    ],
)
def test_float_times_read_rounded_down_with_a_warning(
    es256: Issuer, iat: float, exp: float, read: tuple[int, int], floats: int
) -> None:
    decoded = decode_hc1(es256.hc1(payload={**claims(), 6: iat, 4: exp}))
    assert (decoded.iat, decoded.exp) == read
    assert all(isinstance(t, int) for t in read)
    assert [w.code for w in decoded.warnings] == ["float_time"] * floats
    assert all(w.message.endswith(tuple(f"read as {t}" for t in read)) for w in decoded.warnings)


def test_dcc_is_plain_json(es256: Issuer) -> None:
    """Tag 0 date-times become RFC 3339 text; tuples lists; the result survives json and orjson."""
    moment = datetime(2021, 5, 20, 10, 27, tzinfo=UTC)
    test = {**DCC, "t": [{"sc": moment, "tt": "LP6464-4"}]}
    del test["v"]
    decoded = decode_hc1(es256.hc1(payload=claims(dcc=test)))
    assert decoded.dcc["t"] == [{"sc": "2021-05-20T10:27:00Z", "tt": "LP6464-4"}]
    assert decoded.cert_type is CertType.TEST
    assert json.loads(json.dumps(decoded.dcc, allow_nan=False)) == decoded.dcc
    assert orjson.loads(orjson.dumps(decoded.dcc)) == decoded.dcc


@pytest.mark.parametrize(("group", "cert_type"), list(CERT_TYPE_BY_GROUP.items()))
def test_cert_type_from_the_group(es256: Issuer, group: str, cert_type: CertType) -> None:
    dcc = {**_without("v"), group: [{}]}
    assert decode_hc1(es256.hc1(payload=claims(dcc=dcc))).cert_type is cert_type


def test_decode_cose_does_not_read_the_payload(es256: Issuer) -> None:
    """The verifier checks the signature before it looks inside (HS §6.3)."""
    text = es256.hc1(payload=b"\xff not cbor")
    cose = decode_cose(text)
    assert cose.payload_bstr == b"\xff not cbor" and cose.kid == es256.kid
    with pytest.raises(HcertDecodeError) as caught:
        decode_claims(cose)
    assert caught.value.reason is DecodeReason.CWT_STRUCTURE


def test_every_reason_is_documented_and_exercised() -> None:
    assert set(DECODE_REASONS) == set(DecodeReason)
    assert {reason for reason, _ in FAILURES} == set(DecodeReason)


def test_zip_bomb_is_not_inflated_in_full() -> None:
    bomb = zlib.compress(b"\x00" * (50 * 1024 * 1024), 9)  # 50 MiB in ~50 KiB
    text = "HC1:" + base45.encode(bomb[: MAX_TEXT_CHARS // 3 * 2 - 4])
    with pytest.raises(HcertDecodeError) as caught:
        decode_hc1(text)
    assert caught.value.reason is DecodeReason.TOO_LARGE


def _never_raises_other(text: str) -> None:
    try:
        decode_hc1(text)
    except HcertDecodeError as e:
        assert e.reason in DECODE_REASONS


@settings(max_examples=300)
@given(st.text())
def test_fuzz_any_text(text: str) -> None:
    _never_raises_other(text)


@settings(max_examples=300)
@given(st.text(alphabet=base45.ALPHABET))
def test_fuzz_base45_text(text: str) -> None:
    _never_raises_other("HC1:" + text)


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.booleans())
def test_fuzz_bytes(data: bytes, compress: bool) -> None:
    _never_raises_other("HC1:" + base45.encode(zlib.compress(data) if compress else data))


@settings(max_examples=300)
@given(st.recursive(st.none() | st.integers() | st.binary() | st.text(), st.lists, max_leaves=8))
def test_fuzz_cbor_arrays(item: Any) -> None:
    _never_raises_other(_raw(cbor2.dumps(item)))


@pytest.fixture(scope="module")
def valid_text(es256: Issuer) -> str:
    """Fixed once: ECDSA signatures are randomised, hypothesis needs the same input each run."""
    return es256.hc1()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fuzz_damaged_valid_strings(valid_text: str, data: st.DataObject) -> None:
    text = valid_text
    if data.draw(st.booleans()):
        text = text[: data.draw(st.integers(0, len(text)))]
    else:
        pos = data.draw(st.integers(4, len(text) - 1))
        text = text[:pos] + data.draw(st.sampled_from(base45.ALPHABET)) + text[pos + 1 :]
    _never_raises_other(text)
