"""Our table-driven base45 against the PyPI ``base45`` package, on random data."""

from __future__ import annotations

import base45 as pypi_base45
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signer.hcert import base45


@given(st.binary(max_size=2048))
def test_encode_matches_pypi_base45(data: bytes) -> None:
    assert base45.encode(data) == pypi_base45.b45encode(data).decode()


@given(st.lists(st.binary(max_size=700), max_size=40), st.sampled_from(["", "HC1:"]))
def test_encode_many_matches_single_encodes(blobs: list[bytes], prefix: str) -> None:
    assert base45.encode_many(blobs, prefix) == [prefix + base45.encode(b) for b in blobs]


@given(st.binary(max_size=2048))
def test_decode_inverts_encode(data: bytes) -> None:
    assert base45.decode(base45.encode(data)) == data


def test_rfc9285_examples() -> None:
    # RFC 9285 §4.3: "AB" → "BB8", "Hello!!" → "%69 VD92EX0", "ietf!" → "QED8WEX0"
    assert base45.encode(b"AB") == "BB8"
    assert base45.encode(b"Hello!!") == "%69 VD92EX0"
    assert base45.encode(b"ietf!") == "QED8WEX0"
    assert base45.decode("QED8WEX0") == b"ietf!"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("GGW", "more than two bytes"),  # 65535 < 6 + 16*45 + 32*2025
        ("a0", "alphabet"),
        ("A", "dangling"),
        (":;", "alphabet"),
        ("::", "more than one byte"),
    ],
)
def test_decode_rejects_invalid_text(text: str, reason: str) -> None:
    with pytest.raises(base45.Base45Error, match=reason):
        base45.decode(text)
