"""Behaviour beyond single rules: the returned copy, warnings, precision, boundaries, policy."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signer.domain import CertType
from signer.hcert.validation import ValidationPolicy, validate_payload

from .payloads import NOW, POLICY, lab_test, recovery, vaccination


def _errors(
    payload: object, policy: ValidationPolicy = POLICY, now: datetime = NOW
) -> set[tuple[str, str]]:
    return {(e.code, e.path) for e in validate_payload(payload, policy=policy, now=now).errors}


def test_returned_copy_is_nfc_with_derived_names() -> None:
    payload = vaccination()
    payload["nam"] = {"fn": unicodedata.normalize("NFD", "Nguyễn"), "gn": "Thi\u0323 Đào"}
    payload["v"][0]["is"] = unicodedata.normalize("NFD", "Bộ Y tế")
    before = orjson.dumps(payload)
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert result.errors == ()
    assert result.payload is not None
    assert result.payload["nam"] == {
        "fn": "Nguyễn",
        "gn": "Thị Đào",
        "fnt": "NGUYEN",
        "gnt": "THI<DAO",
    }
    assert result.payload["v"][0]["is"] == "Bộ Y tế"
    assert unicodedata.is_normalized("NFC", result.payload["nam"]["fn"])
    assert orjson.dumps(payload) == before  # input untouched
    assert list(result.payload) == ["ver", "nam", "dob", "v"]  # order kept


def test_no_derivation_when_policy_says_so() -> None:
    payload = vaccination()
    del payload["nam"]["fnt"]
    result = validate_payload(
        payload, policy=ValidationPolicy(derive_transliteration=False), now=NOW
    )
    assert result.errors == ()
    assert result.payload is not None and "fnt" not in result.payload["nam"]


def test_fnt_required_before_1_3_2_is_satisfied_by_derivation() -> None:
    payload = vaccination()
    payload["ver"] = "1.3.0"
    del payload["nam"]["fnt"]
    assert _errors(payload) == set()


def test_deprecated_code_warns_by_default() -> None:
    payload = vaccination()
    payload["v"][0]["mp"] = "NVX-CoV2373"
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert result.errors == ()
    assert [(w.code, w.path) for w in result.warnings] == [("deprecated_code", "/v/0/mp")]
    assert result.payload is not None


def test_untransliterable_name_with_fnt_is_a_warning() -> None:
    payload = vaccination()
    payload["nam"].update(fn="Иванов", fnt="IVANOV")
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert result.errors == ()
    assert [(w.code, w.path) for w in result.warnings] == [
        ("transliteration_unchecked", "/nam/fnt")
    ]


@pytest.mark.parametrize(
    ("dob", "dt"),
    [
        ("2021", "2021-01-01"),  # same year: not "before" at year precision
        ("2021-09", "2021-09-01"),
        ("2021-09-20", "2021-09-20"),
        ("", "2021-09-20"),  # unknown dob is never compared
        ("1900", "2021-09-20"),  # 1900 may be after min_dob 1900-01-02
    ],
)
def test_dob_is_compared_at_its_precision(dob: str, dt: str) -> None:
    payload = vaccination()
    payload["dob"], payload["v"][0]["dt"] = dob, dt
    assert _errors(payload) == set()


@pytest.mark.parametrize(
    ("dob", "dt"), [("2021-10", "2021-09-30"), ("2022", "2021-12-31"), ("2021-09-21", "2021-09-20")]
)
def test_dob_after_event_at_its_precision(dob: str, dt: str) -> None:
    payload = vaccination()
    payload["dob"], payload["v"][0]["dt"] = dob, dt
    now = datetime(2023, 1, 1, tzinfo=UTC)
    assert _errors(payload, now=now) == {("date_order", "/v/0/dt")}


def test_today_in_utc_plus_14_is_not_future() -> None:
    payload = vaccination()
    payload["v"][0]["dt"] = "2024-03-02"  # NOW is 2024-03-01T12:00Z = 2024-03-02T02:00+14:00
    assert _errors(payload) == set()
    payload["v"][0]["dt"] = "2024-03-03"
    assert _errors(payload) == {("future_date", "/v/0/dt")}


@pytest.mark.parametrize(
    ("sc", "ok"),
    [
        ("2024-03-01T12:05:00Z", True),  # exactly now + 300 s skew
        ("2024-03-01T12:05:01Z", False),
        ("2024-03-01T19:05:00+07:00", True),
        ("2024-03-01T12:05:00.999999Z", True),  # fractions are ignored
        ("2024-03-01t12:00:00z", True),  # RFC 3339 allows lower case t and z
        ("2016-12-31T23:59:60Z", True),  # leap second
        ("2024-03-01T12:00:00+01", False),
    ],
)
def test_sample_time_against_skew(sc: str, ok: bool) -> None:
    payload = lab_test()
    payload["t"][0]["sc"] = sc
    assert (_errors(payload) == set()) is ok


def test_clock_skew_is_configurable() -> None:
    payload = lab_test()
    payload["t"][0]["sc"] = "2024-03-01T12:30:00Z"
    assert _errors(payload) == {("future_date", "/t/0/sc")}
    assert _errors(payload, policy=ValidationPolicy(clock_skew_seconds=3600)) == set()


def test_cert_type_and_uvci_are_reported_even_with_errors() -> None:
    payload = recovery()
    payload["r"][0]["du"] = "2021-01-01"
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert result.cert_type is CertType.RECOVERY
    assert result.uvci == "URN:UVCI:01:VN:REC/77"
    assert result.payload is None


@pytest.mark.parametrize(
    ("build", "cert_type"),
    [(vaccination, CertType.VACCINATION), (lab_test, CertType.TEST), (recovery, CertType.RECOVERY)],
)
def test_cert_type(build: Any, cert_type: CertType) -> None:
    assert validate_payload(build(), policy=POLICY, now=NOW).cert_type is cert_type


def test_unknown_fields_are_kept_and_normalised() -> None:
    payload = vaccination()
    payload["x-note"] = {"lời": ["Thi\u0323"]}
    payload["v"][0]["dr"] = "2021-06-11T17:30:00Z"  # removed in 1.2.0, still seen in the wild
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert result.payload is not None
    assert result.payload["x-note"] == {"lời": ["Thị"]}
    assert result.payload["v"][0]["dr"] == "2021-06-11T17:30:00Z"


def test_deeply_nested_unknown_field_is_refused_not_crashing() -> None:
    payload = vaccination()
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    payload["x"] = deep
    assert _errors(payload) == {("type", "/x" + "/0" * 31)}


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_payload(vaccination(), policy=POLICY, now=datetime(2024, 3, 1))


def test_now_in_another_zone_is_the_same_instant() -> None:
    hanoi = NOW.astimezone(timezone(timedelta(hours=7)))
    payload = lab_test()
    payload["t"][0]["sc"] = "2024-03-01T12:05:01Z"
    assert _errors(payload, now=hanoi) == {("future_date", "/t/0/sc")}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"deprecated_codes": "ignore"},
        {"clock_skew_seconds": -1},
        {"uvci_country": "Vietnam"},
        {"min_dob": "1900"},
        {"name_deny_list": ("Nguyen",)},
        {"supported_versions": ("1.0.0",)},
        {"supported_versions": ()},
    ],
)
def test_invalid_policy_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ValidationPolicy(**kwargs)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(["ver", "nam", "dob", "v", "t", "r", "fn", "fnt", "dt", "ci", "sc"])


@given(
    st.dictionaries(_keys, _json | st.lists(st.dictionaries(_keys, _json), max_size=2), max_size=6)
    | _json
)
def test_any_json_value_is_handled(payload: Any) -> None:
    result = validate_payload(payload, policy=POLICY, now=NOW)
    assert result.errors, "random JSON is never a valid DCC"
    assert result.payload is None
    for error in result.errors:
        assert error.path == "" or error.path.startswith("/")
        assert error.message
