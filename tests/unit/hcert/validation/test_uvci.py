"""UVCI Luhn mod 38 checksum and batch duplicate detection (PAYLOAD.md "UVCI (ci)")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signer.hcert.validation import (
    ValidationPolicy,
    find_duplicate_uvcis,
    uvci_checksum,
    validate_payload,
)

from .payloads import NOW, vaccination

_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"


@pytest.mark.parametrize(
    ("uvci", "check"),
    [
        # PAYLOAD.md / eHN Annex 2 example, and the schema's examples/vaccination/simple.json
        ("URN:UVCI:01:NL:187/37512422923", "Z"),
        ("URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7", "1"),
        ("", "A"),  # empty sum → code point 0
        ("A", "A"),
        ("B", "/"),  # doubled 1 → 2; 38 - 2 = 36
    ],
)
def test_known_check_characters(uvci: str, check: str) -> None:
    assert uvci_checksum(uvci) == check


def _reference(text: str) -> str:
    """Straight transcription of Luhn mod N (slow, obviously right) to compare against."""
    n = len(_CHARSET)
    factor, total = 2, 0
    for ch in reversed(text):
        addend = factor * _CHARSET.index(ch)
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return _CHARSET[(n - total % n) % n]


@given(st.text(alphabet=_CHARSET, max_size=80))
def test_matches_reference_algorithm(text: str) -> None:
    assert uvci_checksum(text) == _reference(text)


@given(st.text(alphabet=_CHARSET[:-2] + "/", min_size=1, max_size=50))
def test_round_trip_compute_then_verify(body: str) -> None:
    uvci = f"URN:UVCI:01:VN:{body}"
    payload = vaccination()
    payload["v"][0]["ci"] = f"{uvci}#{uvci_checksum(uvci)}"
    policy = ValidationPolicy(require_uvci_checksum=True, uvci_country="VN")
    result = validate_payload(payload, policy=policy, now=NOW)
    assert result.errors == ()
    assert result.uvci == payload["v"][0]["ci"]


@given(st.text(alphabet=_CHARSET, min_size=1, max_size=40), st.data())
def test_any_single_substitution_is_detected(text: str, data: st.DataObject) -> None:
    """Luhn mod N catches every single-character error."""
    index = data.draw(st.integers(0, len(text) - 1))
    other = data.draw(st.sampled_from(_CHARSET).filter(lambda c: c != text[index]))
    changed = text[:index] + other + text[index + 1 :]
    assert uvci_checksum(changed) != uvci_checksum(text)


@pytest.mark.parametrize("bad", ["urn", "A#B", "É", "A B"])
def test_rejects_characters_outside_the_charset(bad: str) -> None:
    with pytest.raises(ValueError, match="not a UVCI character"):
        uvci_checksum(bad)


def test_duplicates_point_at_first_occurrence() -> None:
    a, b = "URN:UVCI:01:VN:A", "URN:UVCI:01:VN:B"
    uvcis = [a, b, None, a, None, b, a, f"{b}#{uvci_checksum(b)}"]
    assert find_duplicate_uvcis(uvcis) == {3: 0, 5: 1, 6: 0, 7: 1}


def test_no_duplicates() -> None:
    assert find_duplicate_uvcis([None, None, "URN:UVCI:01:VN:A", "URN:UVCI:01:VN:B"]) == {}
    assert find_duplicate_uvcis([]) == {}
