"""Property-based tests: valid payloads pass; any single corruption is caught at its path."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from signer.hcert.validation import ValidationPolicy, validate_payload

from .payloads import NOW, POLICY, delete_at, set_at, vaccination, valid_payloads

_GROUP_REQUIRED = {
    "v": ("tg", "vp", "mp", "ma", "dn", "sd", "dt", "co", "is", "ci"),
    "t": ("tg", "tt", "sc", "tr", "co", "is", "ci"),
    "r": ("tg", "fr", "co", "is", "df", "du", "ci"),
}
_CODED = {"v": ("tg", "vp", "mp", "ma", "co"), "t": ("tg", "tt", "tr", "co"), "r": ("tg", "co")}
_DATES = {"v": ("dt",), "t": ("sc",), "r": ("fr", "df", "du")}
_MALFORMED_DATES = ["2021-02-30", "2021-13-01", "21-06-11", "2021/06/11", "", "2021-06-11 ", "x"]


def _group(payload: dict[str, Any]) -> str:
    return next(g for g in "vtr" if g in payload)


@given(valid_payloads())
def test_valid_payloads_pass(payload: dict[str, Any]) -> None:
    original = copy.deepcopy(payload)
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert result.errors == (), result.errors
    assert result.payload is not None
    assert payload == original  # the caller's object is not touched
    nam = result.payload["nam"]
    assert all(nam.get(k + "t") for k in ("fn", "gn") if k in nam)  # derived where missing


@given(valid_payloads(), st.data())
def test_dropping_a_required_field_is_caught_there(
    payload: dict[str, Any], data: st.DataObject
) -> None:
    group = _group(payload)
    pointer = data.draw(
        st.sampled_from(
            ["/ver", "/dob", "/nam"] + [f"/{group}/0/{key}" for key in _GROUP_REQUIRED[group]]
        )
    )
    delete_at(payload, pointer)
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert ("required", pointer) in {(e.code, e.path) for e in result.errors}
    assert {e.path for e in result.errors} == {pointer}


@given(valid_payloads(), st.data())
def test_malformed_date_is_caught_there(payload: dict[str, Any], data: st.DataObject) -> None:
    group = _group(payload)
    pointer = f"/{group}/0/{data.draw(st.sampled_from(_DATES[group]))}"
    set_at(payload, pointer, data.draw(st.sampled_from(_MALFORMED_DATES)))
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert [(e.code, e.path) for e in result.errors] == [("format", pointer)]


@given(valid_payloads(), st.data())
def test_unknown_code_is_caught_there(payload: dict[str, Any], data: st.DataObject) -> None:
    group = _group(payload)
    pointer = f"/{group}/0/{data.draw(st.sampled_from(_CODED[group]))}"
    set_at(payload, pointer, data.draw(st.sampled_from(["", "UNKNOWN", "840539006x", "ZZ"])))
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert [(e.code, e.path) for e in result.errors] == [("value_set", pointer)]


@given(valid_payloads(), st.data())
def test_wrong_type_is_caught_there(payload: dict[str, Any], data: st.DataObject) -> None:
    group = _group(payload)
    pointer = data.draw(
        st.sampled_from(["/ver", "/dob"] + [f"/{group}/0/{key}" for key in _GROUP_REQUIRED[group]])
    )
    set_at(payload, pointer, data.draw(st.sampled_from([None, 3.5, [], {}, False])))
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert [(e.code, e.path) for e in result.errors] == [("type", pointer)]


@given(valid_payloads(), st.data())
def test_corrupted_transliteration_is_caught_there(
    payload: dict[str, Any], data: st.DataObject
) -> None:
    nam = payload["nam"]
    key = data.draw(st.sampled_from([k for k in ("fn", "gn") if k in nam]))
    nam[key + "t"] = nam.get(key + "t") or "X"
    nam[key + "t"] += "X"  # still ICAO alphabet, no longer the transliteration
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert [(e.code, e.path) for e in result.errors] == [
        ("transliteration_mismatch", f"/nam/{key}t")
    ]


@given(valid_payloads())
def test_overlong_issuer_is_caught_there(payload: dict[str, Any]) -> None:
    group = _group(payload)
    payload[group][0]["is"] = "M" * 81
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert [(e.code, e.path) for e in result.errors] == [("max_length", f"/{group}/0/is")]


@given(valid_payloads(), st.data())
def test_corrupted_uvci_is_caught_there(payload: dict[str, Any], data: st.DataObject) -> None:
    group = _group(payload)
    ci = payload[group][0]["ci"]
    payload[group][0]["ci"] = data.draw(
        st.sampled_from([ci.lower(), ci.replace("URN:UVCI:01:", ""), ci + "#", ci + " ", "x"])
    )
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert [(e.code, e.path) for e in result.errors] == [("uvci_format", f"/{group}/0/ci")]


def test_three_independent_faults_give_three_errors() -> None:
    payload = vaccination()
    payload["nam"]["fnt"] = "NGUYEN<VAN"
    payload["v"][0]["dn"] = 0
    payload["v"][0]["co"] = "XX"
    result = validate_payload(payload, policy=ValidationPolicy(), now=NOW)
    assert sorted((e.code, e.path) for e in result.errors) == [
        ("range", "/v/0/dn"),
        ("transliteration_mismatch", "/nam/fnt"),
        ("value_set", "/v/0/co"),
    ]


@given(valid_payloads(), st.data())
def test_independent_faults_add_up(payload: dict[str, Any], data: st.DataObject) -> None:
    """Each chosen fault contributes exactly its own error, whatever else is broken."""
    group = _group(payload)
    faults = {
        "/ver": ("9.9.9", "unsupported_version"),
        "/dob": ("1985-02-30", "format"),
        f"/{group}/0/tg": ("0", "value_set"),
        f"/{group}/0/is": ("I" * 90, "max_length"),
        f"/{group}/0/ci": ("URN:UVCI:01:VN", "uvci_format"),
    }
    chosen = data.draw(st.sets(st.sampled_from(sorted(faults)), min_size=1))
    for pointer in chosen:
        set_at(payload, pointer, faults[pointer][0])
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert {(e.code, e.path) for e in result.errors} == {(faults[p][1], p) for p in chosen}
    assert len(result.errors) == len(chosen)
