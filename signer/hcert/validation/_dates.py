"""Hand-rolled parsers for the three date shapes of a DCC (PAYLOAD.md "Formats …").

JSON-schema validators treat ``format: date``/``date-time`` as annotations; we enforce them. A
precompiled regex plus ``date.fromisoformat`` (C code) is several times faster than
``datetime.strptime``, and validation is on the hot path.

Dates stay ISO strings: ``YYYY-MM-DD`` (and a dob's ``YYYY``/``YYYY-MM``) order correctly as
text, and "compare a dob at its own precision" is just comparing equal-length prefixes —
``event[:len(dob)] < dob`` — with no integer conversion or allocation.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from typing import Final

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
#: Kiribati (UTC+14) is the first place where a calendar day begins.
_LATEST_OFFSET_SECONDS: Final = 14 * 3600

# RFC 3339 full-date (JSON Schema "date"). The regex keeps out the other ISO 8601 shapes that
# date.fromisoformat also accepts ("20210611", "2021-W23-5").
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# RFC 3339 date-time (§5.6): offset mandatory; "T"/"Z" may be lower case; fraction optional.
_DATE_TIME_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
# PAYLOAD.md "Top level", dob: ^((19|20)\d\d(-\d\d){0,2}){0,1}$ — YYYY, YYYY-MM, YYYY-MM-DD or "".
# The full form is parse_date's; this regex covers the shorter ones, with a real month.
_DOB_RE: Final = re.compile(r"(?:(?:19|20)[0-9]{2}(?:-(?:0[1-9]|1[0-2]))?)?")


def parse_date(text: str) -> str | None:
    """``text`` if it is ``YYYY-MM-DD`` naming a real calendar day, else ``None``."""
    if _DATE_RE.fullmatch(text) is None:
        return None
    try:
        date.fromisoformat(text)
    except ValueError:
        return None
    return text


def parse_date_time(text: str) -> tuple[str, int] | None:
    """RFC 3339 date-time → (its ``YYYY-MM-DD`` as written, POSIX seconds); else ``None``.

    The date is the local one in the string's own offset: the day the sample was taken, which
    is what "date of birth ≤ sample date" compares against. Fractions of a second are dropped.
    """
    m = _DATE_TIME_RE.fullmatch(text)
    if m is None:
        return None
    try:
        day = date.fromisoformat(text[:10])
    except ValueError:
        return None
    hour, minute, second = int(m[1]), int(m[2]), int(m[3])
    # second 60 is a leap second (RFC 3339 §5.7); the rest are plain range checks.
    if hour > 23 or minute > 59 or second > 60:
        return None
    offset = 0
    if m[4] is not None:
        off_h, off_m = int(m[5]), int(m[6])
        if off_h > 23 or off_m > 59:
            return None
        offset = (off_h * 3600 + off_m * 60) * (1 if m[4] == "+" else -1)
    days = day.toordinal() - _EPOCH_ORDINAL
    return text[:10], days * 86400 + hour * 3600 + minute * 60 + second - offset


def parse_dob(text: str) -> str | None:
    """``text`` if it is a valid dob (``""``, ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``), else ``None``.

    The schema pattern allows any two digits for month and day; a real month and (for the full
    form) a real calendar day are required here.
    """
    if len(text) == 10:  # the common full date: one regex and a C parse
        return text if text[:2] in ("19", "20") and parse_date(text) is not None else None
    return text if _DOB_RE.fullmatch(text) is not None else None


@lru_cache(maxsize=64)
def clock(now: datetime, skew_seconds: int) -> tuple[int, str]:
    """(POSIX seconds of ``now``, the latest calendar date anywhere on Earth at now + skew).

    A bare date (``dt``, ``fr``, ``dob``) carries no time zone; it only lies in the future once
    that day has not begun even in UTC+14. This keeps a Hanoi clerk's "today" valid while UTC is
    still on yesterday. Cached: a batch validates all its items against one ``now``.
    """
    seconds = int(now.timestamp())
    latest = seconds + skew_seconds + _LATEST_OFFSET_SECONDS
    return seconds, date.fromordinal(_EPOCH_ORDINAL + latest // 86400).isoformat()
