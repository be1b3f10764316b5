"""Hand-rolled parsers for the three date shapes of a DCC (PAYLOAD.md "Formats …").

JSON-schema validators treat ``format: date``/``date-time`` as annotations; we enforce them. A
precompiled regex plus integer arithmetic is several times faster than ``datetime.strptime``,
and validation is on the hot path. Results are plain ints/tuples so comparisons allocate nothing.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Final

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
#: Kiribati (UTC+14) is the first place where a calendar day begins.
_LATEST_OFFSET_SECONDS: Final = 14 * 3600

# RFC 3339 full-date (JSON Schema "date").
_DATE_RE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
# RFC 3339 date-time (§5.6): offset mandatory; "T"/"Z" may be lower case; fraction optional.
_DATE_TIME_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
# PAYLOAD.md "Top level", dob: ^((19|20)\d\d(-\d\d){0,2}){0,1}$ — YYYY, YYYY-MM, YYYY-MM-DD or "".
_DOB_RE: Final = re.compile(r"(?:((?:19|20)[0-9]{2})(?:-([0-9]{2})(?:-([0-9]{2}))?)?)?")

#: A date as (year, month, day); a dob may be shorter: (year,), (year, month) or ().
DateTuple = tuple[int, ...]


def parse_date(text: str) -> DateTuple | None:
    """``YYYY-MM-DD`` naming a real calendar day → (y, m, d); anything else → ``None``."""
    m = _DATE_RE.fullmatch(text)
    if m is None:
        return None
    return _real_day(int(m[1]), int(m[2]), int(m[3]))


def parse_date_time(text: str) -> tuple[DateTuple, int] | None:
    """RFC 3339 date-time → (its calendar date as written, POSIX seconds); else ``None``.

    The date is the local one in the string's own offset: that is the day the sample was taken,
    which is what "date of birth ≤ sample date" compares against.
    """
    m = _DATE_TIME_RE.fullmatch(text)
    if m is None:
        return None
    day = _real_day(int(m[1]), int(m[2]), int(m[3]))
    hour, minute, second = int(m[4]), int(m[5]), int(m[6])
    # second 60 is a leap second (RFC 3339 §5.7); the rest are plain range checks.
    if day is None or hour > 23 or minute > 59 or second > 60:
        return None
    offset = 0
    if m[7] is not None:
        off_h, off_m = int(m[8]), int(m[9])
        if off_h > 23 or off_m > 59:
            return None
        offset = (off_h * 3600 + off_m * 60) * (1 if m[7] == "+" else -1)
    days = date(*day).toordinal() - _EPOCH_ORDINAL
    return day, days * 86400 + hour * 3600 + minute * 60 + second - offset


def parse_dob(text: str) -> DateTuple | None:
    """A dob at its own precision: ``()``, ``(y,)``, ``(y, m)`` or ``(y, m, d)``; else ``None``."""
    m = _DOB_RE.fullmatch(text)
    if m is None:
        return None
    if m[1] is None:
        return ()
    if m[2] is None:
        return (int(m[1]),)
    if m[3] is None:
        month = int(m[2])
        return (int(m[1]), month) if 1 <= month <= 12 else None
    return _real_day(int(m[1]), int(m[2]), int(m[3]))


def latest_day(now: datetime, skew_seconds: int) -> DateTuple:
    """The latest calendar date anywhere on Earth at ``now`` + skew.

    A bare date (``dt``, ``fr``, ``dob``) carries no time zone; it only lies in the future once
    that day has not begun even in UTC+14. This keeps a Hanoi clerk's "today" valid while UTC is
    still on yesterday.
    """
    seconds = int(now.timestamp()) + skew_seconds + _LATEST_OFFSET_SECONDS
    d = date.fromordinal(_EPOCH_ORDINAL + seconds // 86400)
    return (d.year, d.month, d.day)


def _real_day(year: int, month: int, day: int) -> DateTuple | None:
    if year < 1 or not 1 <= month <= 12 or not 1 <= day <= 31:
        return None
    if day > 28:
        try:
            date(year, month, day)
        except ValueError:
            return None
    return (year, month, day)
