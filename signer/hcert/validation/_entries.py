"""The v / t / r entry checks, table-driven from PAYLOAD.md "v[0]", "t[0]" and "r[0]".

Each group is a tuple of field specs (key, kind, required, label, value set); one loop checks
type, NFC form, length, format and value set per field, then the group's cross-field date rules
run on whatever parsed cleanly, so independent faults are all reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from signer.hcert.validation import _codes as codes
from signer.hcert.validation import _valuesets as vs
from signer.hcert.validation._dates import parse_date, parse_date_time
from signer.hcert.validation._run import Run, nfc
from signer.hcert.validation._uvci import check_uvci

#: Schema maxLength of every free-text string since 1.3.0 (PAYLOAD.md "Schema history").
MAX_LENGTH: Final = 80

_TEXT, _CODE, _DATE, _DATE_TIME, _DOSE, _UVCI = range(6)


class _Field(NamedTuple):
    key: str
    kind: int
    required: bool
    label: str
    values: Mapping[str, bool] | None = None
    value_set: str = ""


def _code(
    key: str, label: str, values: Mapping[str, bool], name: str, *, required: bool = True
) -> _Field:
    return _Field(key, _CODE, required, label, values, name)


_TG: Final = _code(
    "tg", "disease or agent targeted", vs.DISEASE_AGENT_TARGETED, "disease-agent-targeted"
)
_CO: Final = _code("co", "country", vs.COUNTRY_2_CODES, "country-2-codes")
_IS: Final = _Field("is", _TEXT, True, "certificate issuer")
_CI: Final = _Field("ci", _UVCI, True, "certificate identifier")

# PAYLOAD.md "v[0] vaccination_entry": all 10 required.
VACCINATION: Final = (
    _TG,
    _code("vp", "vaccine or prophylaxis", vs.VACCINE_PROPHYLAXIS, "vaccine-prophylaxis"),
    _code("mp", "vaccine product", vs.VACCINE_MEDICINAL_PRODUCT, "vaccine-medicinal-product"),
    _code("ma", "vaccine manufacturer", vs.VACCINE_MAH_MANF, "vaccine-mah-manf"),
    _Field("dn", _DOSE, True, "dose number"),
    _Field("sd", _DOSE, True, "total doses in the series"),
    _Field("dt", _DATE, True, "date of vaccination"),
    _CO,
    _IS,
    _CI,
)
# PAYLOAD.md "t[0] test_entry": required tg tt sc tr co is ci; nm, ma, tc optional.
TEST: Final = (
    _TG,
    _code("tt", "type of test", vs.TEST_TYPE, "test-type"),
    _Field("nm", _TEXT, False, "NAA test name"),
    _code("ma", "rapid antigen test device", vs.TEST_MANF, "test-manf", required=False),
    _Field("sc", _DATE_TIME, True, "date and time of sample collection"),
    _code("tr", "test result", vs.TEST_RESULT, "test-result"),
    _Field("tc", _TEXT, False, "testing centre"),
    _CO,
    _IS,
    _CI,
)
# PAYLOAD.md "r[0] recovery_entry": all 7 required.
RECOVERY: Final = (
    _TG,
    _Field("fr", _DATE, True, "date of the first positive test"),
    _CO,
    _IS,
    _Field("df", _DATE, True, "certificate valid from"),
    _Field("du", _DATE, True, "certificate valid until"),
    _CI,
)
SPECS: Final[Mapping[str, tuple[_Field, ...]]] = {"v": VACCINATION, "t": TEST, "r": RECOVERY}


def check_entry(
    run: Run, group: str, entry: dict[str, Any], path: str, dob: str | None
) -> str | None:
    """Check one entry of ``group``, NFC-normalising ``entry`` (a private copy) in place.

    Returns the UVCI when ``ci`` is well-formed. ``dob`` is the parsed, plausible date of birth,
    or ``None`` to skip comparisons with it.
    """
    days: dict[str, str] = {}
    sample_seconds = -1
    uvci = None
    for field in SPECS[group]:
        key, kind, required, _, values, _ = field
        value = entry.get(key)
        if value is None:
            if key in entry:  # JSON null
                run.wrong_type(f"{path}/{key}", _what(field), _EXPECTED[kind], value)
            elif required:
                run.error(codes.REQUIRED, f"{path}/{key}", f"{_what(field)} is missing")
        elif kind == _DOSE:
            _check_dose(run, field, path, value)
        elif not isinstance(value, str):
            run.wrong_type(f"{path}/{key}", _what(field), "a string", value)
        else:
            if not value.isascii():
                value = entry[key] = nfc(value)
            if kind == _CODE:
                if values is None or not values.get(value):  # unknown (None) or deprecated
                    _bad_code(run, field, path, value)
            elif kind == _DATE:
                day = parse_date(value)
                if day is None:
                    _bad_format(run, field, path, value, "a real calendar date written YYYY-MM-DD")
                else:
                    days[key] = day
            elif kind == _DATE_TIME:
                parsed = parse_date_time(value)
                if parsed is None:
                    _bad_format(run, field, path, value, _DATE_TIME_HINT)
                else:
                    days[key], sample_seconds = parsed
            elif len(value) > MAX_LENGTH:  # _TEXT or _UVCI
                run.error(
                    codes.MAX_LENGTH,
                    f"{path}/{key}",
                    f"{_what(field)} is {len(value)} characters long; "
                    f"at most {MAX_LENGTH} are allowed",
                )
            elif kind == _UVCI:
                uvci = _check_ci(run, path, value)
    _check_dates(run, group, path, days=days, sample_seconds=sample_seconds, dob=dob)
    return uvci


def _what(field: _Field) -> str:
    return f"{field.label} ({field.key})"


def _check_dose(run: Run, field: _Field, path: str, value: object) -> None:
    # PAYLOAD.md: integer ≥ 1. bool is an int subclass in Python, and 1.0 would travel as a CBOR
    # float, so both are type errors.
    if type(value) is not int:
        run.wrong_type(f"{path}/{field.key}", _what(field), "a whole number", value)
    elif value < 1:
        run.error(
            codes.RANGE, f"{path}/{field.key}", f"{_what(field)} is {value}; it must be 1 or more"
        )


def _bad_code(run: Run, field: _Field, path: str, value: str) -> None:
    active = field.values.get(value) if field.values is not None else None
    if active is None:
        run.error(
            codes.VALUE_SET,
            f"{path}/{field.key}",
            f'{_what(field)} "{value}" is not a code of the EU DCC value set {field.value_set}',
        )
    elif not active:
        run.deprecated(
            f"{path}/{field.key}",
            f'{_what(field)} "{value}" is deprecated in the EU DCC value set {field.value_set}; '
            "use a current code",
        )


def _bad_format(run: Run, field: _Field, path: str, value: str, expected: str) -> None:
    run.error(codes.FORMAT, f"{path}/{field.key}", f'{_what(field)} "{value}" is not {expected}')


def _check_ci(run: Run, path: str, value: str) -> str | None:
    policy = run.policy
    uvci, problems = check_uvci(
        value, require_checksum=policy.require_uvci_checksum, country=policy.uvci_country
    )
    for code, message in problems:
        run.error(code, f"{path}/ci", message)
    return uvci


_DATE_TIME_HINT: Final = (
    'an RFC 3339 date-time such as "2021-06-11T17:30:00Z" or "2021-06-11T17:30:00+07:00"'
)


def _check_dates(
    run: Run,
    group: str,
    path: str,
    *,
    days: dict[str, str],
    sample_seconds: int,
    dob: str | None,
) -> None:
    """dob ≤ event ≤ now (+ skew); recovery df ≤ du (issue rules; PAYLOAD.md field tables)."""
    event_key, label = _EVENT[group]
    event = days.get(event_key)
    if event is not None:
        if group == "t":
            if sample_seconds > run.now_seconds + run.policy.clock_skew_seconds:
                run.error(
                    codes.FUTURE_DATE,
                    f"{path}/sc",
                    f"{label} (sc) is in the future (now is {_now(run)})",
                )
        elif event > run.latest:
            run.error(
                codes.FUTURE_DATE,
                f"{path}/{event_key}",
                f"{label} ({event_key}) {event} is in the future "
                f"(no time zone has reached that day at {_now(run)})",
            )
        if dob and event[: len(dob)] < dob:
            run.error(
                codes.DATE_ORDER,
                f"{path}/{event_key}",
                f"{label} ({event_key}) {event} is before the date of birth (dob) {dob}",
            )
    if group == "r":
        valid_from, valid_until = days.get("df"), days.get("du")
        if valid_from is not None and valid_until is not None and valid_until < valid_from:
            run.error(
                codes.DATE_ORDER,
                f"{path}/du",
                f"certificate valid until (du) {valid_until} is before certificate valid "
                f"from (df) {valid_from}",
            )


def _now(run: Run) -> str:
    return run.now.isoformat(timespec="seconds")


#: The date each group's "dob ≤ date ≤ now" rule is about.
_EVENT: Final = {
    "v": ("dt", "date of vaccination"),
    "t": ("sc", "date of sample collection"),
    "r": ("fr", "date of the first positive test"),
}
_EXPECTED: Final = {
    _TEXT: "a string",
    _CODE: "a string code",
    _DATE: "a date string (YYYY-MM-DD)",
    _DATE_TIME: "a date-time string (RFC 3339)",
    _DOSE: "a whole number",
    _UVCI: "a string",
}
