"""One table row per rule: a mutation of a valid payload → exactly the (code, path) expected.

Rows compare the full set of (code, path) pairs, so an extra or a missing error fails the row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from signer.front.policy import POLICY_ERROR_CODES
from signer.hcert.validation import ERROR_CODES, ValidationPolicy, validate_payload
from signer.service import SERVICE_ERROR_CODES
from signer.validate._check import VALIDATE_ERROR_CODES

from .payloads import NOW, delete_at, lab_test, recovery, set_at, vaccination, with_checksum

DELETE = object()


class Case(NamedTuple):
    id: str
    base: Callable[[], dict[str, Any]]
    edits: dict[str, Any]  # JSON pointer → new value, or DELETE
    expected: set[tuple[str, str]]
    policy: ValidationPolicy = ValidationPolicy()


def _v(edits: dict[str, Any], *expected: tuple[str, str], **policy: Any) -> Case:
    return Case("", vaccination, edits, set(expected), ValidationPolicy(**policy))


def _t(edits: dict[str, Any], *expected: tuple[str, str], **policy: Any) -> Case:
    return Case("", lab_test, edits, set(expected), ValidationPolicy(**policy))


def _r(edits: dict[str, Any], *expected: tuple[str, str], **policy: Any) -> Case:
    return Case("", recovery, edits, set(expected), ValidationPolicy(**policy))


CASES: dict[str, Case] = {
    # type
    "nam not an object": _v({"/nam": "Nguyen"}, ("type", "/nam")),
    "dn is a bool": _v({"/v/0/dn": True}, ("type", "/v/0/dn")),
    "sd is a float": _v({"/v/0/sd": 2.0}, ("type", "/v/0/sd")),
    "dt is a number": _v({"/v/0/dt": 20210920}, ("type", "/v/0/dt")),
    "co is null": _v({"/v/0/co": None}, ("type", "/v/0/co")),
    "v is an object": _v({"/v": {"dt": "2021-09-20"}}, ("type", "/v")),
    "v entry is a string": _v({"/v/0": "x"}, ("type", "/v/0")),
    "fnt is null": _v({"/nam/fnt": None}, ("type", "/nam/fnt")),
    "ver is a number": _v({"/ver": 1.3}, ("type", "/ver")),
    "dob is a number": _v({"/dob": 1985}, ("type", "/dob")),
    # required
    "ver missing": _v({"/ver": DELETE}, ("required", "/ver")),
    "nam missing": _v({"/nam": DELETE}, ("required", "/nam")),
    "dob missing": _v({"/dob": DELETE}, ("required", "/dob")),
    "v dt missing": _v({"/v/0/dt": DELETE}, ("required", "/v/0/dt")),
    "v ci missing": _v({"/v/0/ci": DELETE}, ("required", "/v/0/ci")),
    "t sc missing": _t({"/t/0/sc": DELETE}, ("required", "/t/0/sc")),
    "r du missing": _r({"/r/0/du": DELETE}, ("required", "/r/0/du")),
    "nam empty": _v({"/nam": {}}, ("required", "/nam")),
    "no fnt/gnt, derive off": _v(
        {"/nam/fnt": DELETE, "/nam/gnt": DELETE}, ("required", "/nam"), derive_transliteration=False
    ),
    "fnt missing in 1.3.0": _v(
        {"/ver": "1.3.0", "/nam/fn": DELETE, "/nam/fnt": DELETE}, ("required", "/nam/fnt")
    ),
    # format
    "dt not a calendar day": _v({"/v/0/dt": "2021-02-30"}, ("format", "/v/0/dt")),
    "dt basic ISO form": _v({"/v/0/dt": "20210920"}, ("format", "/v/0/dt")),
    "dt week form": _v({"/v/0/dt": "2021-W38-1"}, ("format", "/v/0/dt")),
    "dt with time": _v({"/v/0/dt": "2021-09-20T10:00:00Z"}, ("format", "/v/0/dt")),
    "df one-digit month": _r({"/r/0/df": "2021-8-12"}, ("format", "/r/0/df")),
    "sc with space": _t({"/t/0/sc": "2021-10-01 08:30:00Z"}, ("format", "/t/0/sc")),
    "sc without offset": _t({"/t/0/sc": "2021-10-01T08:30:00"}, ("format", "/t/0/sc")),
    "sc hour 24": _t({"/t/0/sc": "2021-10-01T24:00:00Z"}, ("format", "/t/0/sc")),
    "sc offset 24h": _t({"/t/0/sc": "2021-10-01T08:00:00+24:00"}, ("format", "/t/0/sc")),
    "dob two-digit year": _v({"/dob": "85-07-14"}, ("format", "/dob")),
    "dob month 13": _v({"/dob": "1985-13"}, ("format", "/dob")),
    "dob 18xx": _v({"/dob": "1899-12-31"}, ("format", "/dob")),
    "dob 29 Feb non-leap": _v({"/dob": "1985-02-29"}, ("format", "/dob")),
    "fnt lower case": _v({"/nam/fnt": "Nguyen"}, ("format", "/nam/fnt")),
    "gnt with space": _v({"/nam/gnt": "THI DAO"}, ("format", "/nam/gnt")),
    "ver two parts": _v({"/ver": "1.3"}, ("format", "/ver")),
    "ver any char as dot": _v({"/ver": "1a3b3"}, ("format", "/ver")),
    # max_length
    "is 81 chars": _v({"/v/0/is": "B" * 81}, ("max_length", "/v/0/is")),
    "tc 81 chars": _t({"/t/0/tc": "ệ" * 81}, ("max_length", "/t/0/tc")),
    "ci 81 chars": _v({"/v/0/ci": "URN:UVCI:01:VN:" + "A" * 66}, ("max_length", "/v/0/ci")),
    # gnt may be the first 80 characters of a longer transliteration: only gn is too long.
    "gn 81 chars": _v({"/nam/gn": "A" * 81, "/nam/gnt": "A" * 80}, ("max_length", "/nam/gn")),
    "derived fnt too long": _v(
        {"/nam/fn": "Ä" * 41, "/nam/fnt": DELETE}, ("max_length", "/nam/fnt")
    ),
    # value_set
    "tg unknown": _v({"/v/0/tg": "12345"}, ("value_set", "/v/0/tg")),
    "vp unknown": _v({"/v/0/vp": "J07BX99"}, ("value_set", "/v/0/vp")),
    "mp unknown": _v({"/v/0/mp": "EU/1/99/0000"}, ("value_set", "/v/0/mp")),
    "v ma is a test device": _v({"/v/0/ma": "1232"}, ("value_set", "/v/0/ma")),
    "co unknown": _v({"/v/0/co": "XX"}, ("value_set", "/v/0/co")),
    "co lower case": _v({"/v/0/co": "vn"}, ("value_set", "/v/0/co")),
    "tt unknown": _t({"/t/0/tt": "LP0000-0"}, ("value_set", "/t/0/tt")),
    "tr unknown": _t({"/t/0/tr": "0"}, ("value_set", "/t/0/tr")),
    "t ma unknown": _t({"/t/0/ma": "99999"}, ("value_set", "/t/0/ma")),
    "r tg unknown": _r({"/r/0/tg": "840539007"}, ("value_set", "/r/0/tg")),
    # deprecated_code under "refuse"
    "mp deprecated": _v(
        {"/v/0/mp": "VLA2001"}, ("deprecated_code", "/v/0/mp"), deprecated_codes="refuse"
    ),
    "vp deprecated": _v(
        {"/v/0/vp": "J07BX03"}, ("deprecated_code", "/v/0/vp"), deprecated_codes="refuse"
    ),
    "t ma deprecated": _t(
        {"/t/0/ma": "1065"}, ("deprecated_code", "/t/0/ma"), deprecated_codes="refuse"
    ),
    # range
    "dn 0": _v({"/v/0/dn": 0}, ("range", "/v/0/dn")),
    "sd negative": _v({"/v/0/sd": -1}, ("range", "/v/0/sd")),
    # date_order
    "dt before dob": _v({"/v/0/dt": "1985-07-13"}, ("date_order", "/v/0/dt")),
    "sc before dob month": _t({"/t/0/sc": "1990-01-31T23:00:00Z"}, ("date_order", "/t/0/sc")),
    "fr before dob year": _r({"/r/0/fr": "1978-12-31"}, ("date_order", "/r/0/fr")),
    "du before df": _r({"/r/0/du": "2021-08-11"}, ("date_order", "/r/0/du")),
    # future_date (NOW = 2024-03-01T12:00Z; 2024-03-02 has begun in UTC+14, 2024-03-03 has not)
    "dt future": _v({"/v/0/dt": "2024-03-03"}, ("future_date", "/v/0/dt")),
    "fr future": _r({"/r/0/fr": "2024-03-03"}, ("future_date", "/r/0/fr")),
    "sc beyond skew": _t({"/t/0/sc": "2024-03-01T12:05:01Z"}, ("future_date", "/t/0/sc")),
    "sc beyond skew, offset": _t(
        {"/t/0/sc": "2024-03-01T19:05:01+07:00"}, ("future_date", "/t/0/sc")
    ),
    # transliteration
    "fnt mismatch": _v({"/nam/fnt": "NGUYEN<VAN"}, ("transliteration_mismatch", "/nam/fnt")),
    "gnt tone mark lost wrongly": _v(
        {"/nam/gnt": "THI<DAU"}, ("transliteration_mismatch", "/nam/gnt")
    ),
    "gnt keeps D for Đ": _v({"/nam/gnt": "THI<DJAO"}, ("transliteration_mismatch", "/nam/gnt")),
    "fn Cyrillic, no fnt": _v(
        {"/nam/fn": "Иванов", "/nam/fnt": DELETE}, ("transliteration_unsupported", "/nam/fn")
    ),
    # UVCI
    "ci lower case": _v({"/v/0/ci": "urn:uvci:01:vn:abc"}, ("uvci_format", "/v/0/ci")),
    "ci without prefix": _v({"/v/0/ci": "01VN123456#4"}, ("uvci_format", "/v/0/ci")),
    "ci unknown country": _v({"/v/0/ci": "URN:UVCI:01:ZZ:ABC"}, ("uvci_format", "/v/0/ci")),
    "ci version 02": _v({"/v/0/ci": "URN:UVCI:02:VN:ABC"}, ("uvci_format", "/v/0/ci")),
    "ci empty hash": _v({"/v/0/ci": "URN:UVCI:01:VN:ABC#"}, ("uvci_format", "/v/0/ci")),
    "ci two check chars": _v({"/v/0/ci": "URN:UVCI:01:VN:ABC#12"}, ("uvci_format", "/v/0/ci")),
    "ci nothing after country": _v({"/v/0/ci": "URN:UVCI:01:VN:"}, ("uvci_format", "/v/0/ci")),
    "ci wrong checksum": _v(
        {"/v/0/ci": "URN:UVCI:01:NL:187/37512422923#Y"}, ("uvci_checksum", "/v/0/ci")
    ),
    "ci checksum required": _v(
        {"/v/0/ci": "URN:UVCI:01:VN:ABC"}, ("uvci_checksum", "/v/0/ci"), require_uvci_checksum=True
    ),
    "ci other country": _v(
        {"/v/0/ci": with_checksum("URN:UVCI:01:DE:ABC")},
        ("uvci_country", "/v/0/ci"),
        uvci_country="VN",
    ),
    "ci other country, bad checksum": _v(
        {"/v/0/ci": "URN:UVCI:01:DE:ABC#A"},
        ("uvci_country", "/v/0/ci"),
        ("uvci_checksum", "/v/0/ci"),
        uvci_country="VN",
    ),
    # version
    "ver 1.2.1": _v({"/ver": "1.2.1"}, ("unsupported_version", "/ver")),
    "ver 2.0.0": _v({"/ver": "2.0.0"}, ("unsupported_version", "/ver")),
    "ver not in policy": _v(
        {"/ver": "1.3.2"}, ("unsupported_version", "/ver"), supported_versions=("1.3.3",)
    ),
    # group
    "v and t": _v({"/t": lab_test()["t"]}, ("group", "")),
    "none of v/t/r": _v({"/v": DELETE}, ("group", "")),
    "v empty": _v({"/v": []}, ("group", "/v")),
    "v two entries": _v({"/v/1": vaccination()["v"][0]}, ("group", "/v")),
    # implausible
    "dob before min_dob": _v({"/dob": "1900-01-01"}, ("implausible", "/dob")),
    "dob in the future": _v({"/dob": "2030"}, ("implausible", "/dob")),
    "dob before custom min_dob": _v(
        {"/dob": "1909-12"}, ("implausible", "/dob"), min_dob="1910-01-01"
    ),
    # denied_name
    "fnt denied": _v({}, ("denied_name", "/nam/fnt"), name_deny_list=("NGUYEN",)),
    "derived gnt denied": _v(
        {"/nam/gnt": DELETE}, ("denied_name", "/nam/gnt"), name_deny_list=("THI<DAO",)
    ),
}


def _apply(case: Case) -> dict[str, Any]:
    payload = case.base()
    for pointer, value in case.edits.items():
        if value is DELETE:
            delete_at(payload, pointer)
        elif pointer == "/v/1":
            payload["v"].append(value)
        else:
            set_at(payload, pointer, value)
    return payload


@pytest.mark.parametrize("name", list(CASES))
def test_rule(name: str) -> None:
    case = CASES[name]
    result = validate_payload(_apply(case), policy=case.policy, now=NOW)
    assert {(e.code, e.path) for e in result.errors} == case.expected
    assert result.payload is None
    assert all(e.message for e in result.errors)


@pytest.mark.parametrize("base", [vaccination, lab_test, recovery])
def test_bases_are_valid(base: Callable[[], dict[str, Any]]) -> None:
    """The table means something only if the unmutated payloads pass."""
    result = validate_payload(base(), policy=ValidationPolicy(), now=NOW)
    assert result.errors == ()
    assert result.payload is not None


@pytest.mark.parametrize("payload", [[], "HC1:...", 42, None, True, [{"ver": "1.3.3"}]])
def test_non_object_payload(payload: object) -> None:
    result = validate_payload(payload, policy=ValidationPolicy(), now=NOW)
    assert [(e.code, e.path) for e in result.errors] == [("type", "")]
    assert result.payload is None and result.cert_type is None and result.uvci is None


def test_every_code_is_exercised_and_documented() -> None:
    tabled = {code for case in CASES.values() for code, _ in case.expected}
    # Two codes are not item errors of validate_payload: one is a warning, one comes from the
    # batch helper (both tested in their own modules).
    assert tabled | {"transliteration_unchecked", "duplicate_uvci"} == set(ERROR_CODES)
    docs = (Path(__file__).parents[4] / "docs" / "errors.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", docs, flags=re.MULTILINE))
    assert documented == (
        set(ERROR_CODES)
        | set(SERVICE_ERROR_CODES)
        | set(POLICY_ERROR_CODES)
        | set(VALIDATE_ERROR_CODES)
    )


def test_mismatch_message_shows_both_values() -> None:
    payload = vaccination()
    payload["nam"].update(fn="Nguyễn Thị", fnt="NGUYEN<VAN")
    result = validate_payload(payload, policy=ValidationPolicy(), now=NOW)
    assert [e.message for e in result.errors] == [
        'fnt "NGUYEN<VAN" is not the ICAO 9303 transliteration of fn "Nguyễn Thị" '
        '(expected "NGUYEN<THI")'
    ]
