"""The EU DCC JSON schema 1.3.x, checked in code (``signer verify --schema``; issue 10 §1).

The project's own compact rendering of ``DCC.combined-schema.json`` (eu-dcc-schema 1.3.3,
Apache-2.0, read for its facts; digest in PAYLOAD.md "Top level"): types, required fields,
``maxLength``, patterns, ``minimum``, one entry in exactly one of ``v``/``t``/``r``, and the
``date`` / ``date-time`` formats the reference validator asserts. No ``additionalProperties``
rule exists in the schema, so unknown fields pass. Value sets are not part of the schema
(PAYLOAD.md: "the schema does *not* enumerate codes"), so codes are not checked here.

This is deliberately narrower than :mod:`signer.hcert.validation`, which holds what this
appliance *issues* to stricter rules (value sets, ICAO transliteration, UVCI).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

_VER = re.compile(r"\d+.\d+.\d+")  # the schema leaves the dots unescaped
_DOB = re.compile(r"((19|20)\d\d(-\d\d){0,2}){0,1}")
_ICAO = re.compile(r"[A-Z<]*")
_COUNTRY = re.compile(r"[A-Z]{1,10}")  # unanchored in the schema: "contains"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MAX_LENGTH = 80

Check = Callable[[Any], str | None]


def schema_problems(dcc: Mapping[str, Any]) -> list[str]:
    """Every schema violation of ``dcc``, each as ``"<JSON pointer>: <what is wrong>"``."""
    problems: list[str] = []
    _fields(dcc, "", {"ver": _ver, "nam": None, "dob": _dob}, problems)
    nam = dcc.get("nam")
    if isinstance(nam, Mapping):
        _fields(nam, "/nam", {}, problems, optional=_NAME_FIELDS)
        if "fnt" not in nam and "gnt" not in nam:
            problems.append("/nam: needs fnt or gnt")
    elif "nam" in dcc:
        problems.append("/nam: not an object")
    groups = [group for group in _ENTRIES if group in dcc]
    if len(groups) != 1:
        problems.append("/: needs exactly one of v, t, r")
    for group in groups:
        entries = dcc[group]
        if not isinstance(entries, list) or len(entries) != 1:
            problems.append(f"/{group}: not an array of exactly one entry")
            continue
        required, optional = _ENTRIES[group]
        if isinstance(entries[0], Mapping):
            _fields(entries[0], f"/{group}/0", required, problems, optional=optional)
        else:
            problems.append(f"/{group}/0: not an object")
    return problems


def _fields(
    obj: Mapping[str, Any],
    path: str,
    required: Mapping[str, Check | None],
    problems: list[str],
    *,
    optional: Mapping[str, Check] | None = None,
) -> None:
    for name, check in required.items():
        if name not in obj:
            problems.append(f"{path}/{name}: required")
        elif check is not None and (problem := check(obj[name])) is not None:
            problems.append(f"{path}/{name}: {problem}")
    for name, check in (optional or {}).items():
        if name in obj and (problem := check(obj[name])) is not None:
            problems.append(f"{path}/{name}: {problem}")


def _text(
    value: Any, pattern: re.Pattern[str] | None = None, *, search: bool = False
) -> str | None:
    if not isinstance(value, str):
        return "not a string"
    if len(value) > _MAX_LENGTH:
        return f"longer than {_MAX_LENGTH} characters"
    if pattern is not None and not (pattern.search if search else pattern.fullmatch)(value):
        return f"{value!r} does not match {pattern.pattern}"
    return None


def _string(value: Any) -> str | None:
    return _text(value)


def _ver(value: Any) -> str | None:
    return _text(value, _VER)


def _dob(value: Any) -> str | None:
    return _text(value, _DOB)


def _icao(value: Any) -> str | None:
    return _text(value, _ICAO)


def _country(value: Any) -> str | None:
    return _text(value, _COUNTRY, search=True)


def _dose(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return "not an integer"
    return None if value >= 1 else "below 1"


def _date(value: Any) -> str | None:
    """RFC 3339 full-date naming a real day (``format: date``)."""
    problem = _text(value, _DATE)
    if problem is None:
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return f"{value!r} is not a real day"
    return problem


def _date_time(value: Any) -> str | None:
    """RFC 3339 date-time with an offset (``format: date-time``)."""
    problem = _text(value)
    if problem is not None:
        return problem
    try:
        moment = dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return f"{value!r} is not an RFC 3339 date-time"
    if "T" not in value.upper() or moment.tzinfo is None:
        return f"{value!r} is not an RFC 3339 date-time with an offset"
    return None


_NAME_FIELDS: dict[str, Check] = {"fn": _string, "fnt": _icao, "gn": _string, "gnt": _icao}

_COMMON: dict[str, Check | None] = {"tg": _string, "co": _country, "is": _string, "ci": _string}

#: group → (required fields, optional fields), DCC.Types.schema.json 1.3.x.
_ENTRIES: dict[str, tuple[dict[str, Check | None], dict[str, Check]]] = {
    "v": (
        {
            **_COMMON,
            "vp": _string,
            "mp": _string,
            "ma": _string,
            "dn": _dose,
            "sd": _dose,
            "dt": _date,
        },
        {},
    ),
    "t": (
        {**_COMMON, "tt": _string, "sc": _date_time, "tr": _string},
        {"nm": _string, "ma": _string, "tc": _string},
    ),
    "r": ({**_COMMON, "fr": _date, "df": _date, "du": _date}, {}),
}
