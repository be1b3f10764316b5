"""Checks of the person: ``nam`` (fn/fnt/gn/gnt) and ``dob`` (PAYLOAD.md "Top level", "nam")."""

from __future__ import annotations

import re
from typing import Any, Final

from signer.hcert.validation import _codes as codes
from signer.hcert.validation._dates import parse_dob
from signer.hcert.validation._entries import MAX_LENGTH
from signer.hcert.validation._names import first_unsupported, icao_or_none
from signer.hcert.validation._policy import FNT_REQUIRED_VERSIONS
from signer.hcert.validation._run import Run, nfc

#: PAYLOAD.md "nam": fnt/gnt pattern ^[A-Z<]*$ (maxLength 80 like every name field).
_ICAO_RE: Final = re.compile(r"[A-Z<]*")
#: (name key, transliterated key, what a clerk calls them)
_PAIRS: Final = (
    ("fn", "fnt", "surname", "standardised surname"),
    ("gn", "gnt", "forename", "standardised forename"),
)


def check_name(run: Run, nam: dict[str, Any], version: str | None) -> None:
    """Check ``nam`` (a private copy): NFC-normalises it and derives ``fnt``/``gnt`` in place."""
    errors_before = len(run.errors)
    has_transliteration = False
    for key, t_key, label, t_label in _PAIRS:
        translit = _check_pair(run, nam, key, t_key, label, t_label)
        if translit:
            has_transliteration = True
            if translit in run.policy.name_deny_list:
                run.error(
                    codes.DENIED_NAME,
                    f"/nam/{t_key}",
                    f'{t_label} ({t_key}) "{translit}" is on the deny list of this signer',
                )
    if version in FNT_REQUIRED_VERSIONS and "fnt" not in nam:
        run.error(
            codes.REQUIRED,
            "/nam/fnt",
            f"standardised surname (fnt) is missing; schema version {version} requires it",
        )
    elif not has_transliteration and len(run.errors) == errors_before:
        # PAYLOAD.md "nam": anyOf required fnt | gnt (since 1.3.2); an empty one carries no name.
        run.error(
            codes.REQUIRED,
            "/nam",
            "the name has neither a standardised surname (fnt) nor a standardised forename (gnt); "
            "at least one is required",
        )


def _check_pair(
    run: Run, nam: dict[str, Any], key: str, t_key: str, label: str, t_label: str
) -> str | None:
    """Check one name and its transliteration; returns the usable transliteration, if any."""
    name = _text(run, nam, key, label)
    translit = _text(run, nam, t_key, t_label)
    expected = icao_or_none(name) if name is not None else None
    if translit is not None:
        if translit == expected:  # the common case: right by construction, no regex needed
            return translit if len(translit) <= MAX_LENGTH else None
        if _ICAO_RE.fullmatch(translit) is None:
            run.error(
                codes.FORMAT,
                f"/nam/{t_key}",
                f'{t_label} ({t_key}) "{translit}" may only contain the letters A-Z and "<" '
                "(ICAO 9303)",
            )
            return None
        if len(translit) > MAX_LENGTH or name is None:
            return translit if len(translit) <= MAX_LENGTH else None
        if expected is None:
            run.warn(
                codes.TRANSLITERATION_UNCHECKED,
                f"/nam/{t_key}",
                f'{t_key} "{translit}" was not checked: {key} "{name}" contains '
                f'"{first_unsupported(name)}", which this signer cannot transliterate '
                "(Latin script only)",
            )
            return translit
        # An issuer may cut a longer transliteration at 80 characters.
        if translit != expected[:MAX_LENGTH]:
            run.error(
                codes.TRANSLITERATION_MISMATCH,
                f"/nam/{t_key}",
                f'{t_key} "{translit}" is not the ICAO 9303 transliteration of {key} "{name}" '
                f'(expected "{expected}")',
            )
            return None
        return translit
    if t_key in nam or name is None or not run.policy.derive_transliteration:
        return None  # mistyped (already reported), nothing to derive from, or not asked to
    if expected is None:
        run.error(
            codes.TRANSLITERATION_UNSUPPORTED,
            f"/nam/{key}",
            f'{key} "{name}" contains "{first_unsupported(name)}", which this signer cannot '
            f"transliterate (Latin script only); supply {t_key} in ICAO 9303 form",
        )
        return None
    if len(expected) > MAX_LENGTH:
        run.error(
            codes.MAX_LENGTH,
            f"/nam/{t_key}",
            f'the ICAO 9303 transliteration of {key} "{name}" is {len(expected)} characters '
            f"long; at most {MAX_LENGTH} are allowed in {t_key}",
        )
        return None
    if expected:
        nam[t_key] = expected
    return expected


def check_dob(run: Run, payload: dict[str, Any]) -> str | None:
    """Check ``dob``; returns it (``""`` when unknown), or ``None`` when it must not be compared."""
    value = payload.get("dob")
    if value is None:
        if "dob" in payload:
            run.wrong_type("/dob", "date of birth (dob)", "a string", value)
        else:
            run.error(
                codes.REQUIRED, "/dob", 'date of birth (dob) is missing; use "" if it is unknown'
            )
        return None
    if not isinstance(value, str):
        run.wrong_type("/dob", "date of birth (dob)", "a string", value)
        return None
    dob = parse_dob(value)
    if dob is None:
        run.error(
            codes.FORMAT,
            "/dob",
            f'date of birth (dob) "{value}" must be a real date written YYYY-MM-DD, YYYY-MM or '
            'YYYY with a year from 1900 to 2099, or "" when unknown',
        )
        return None
    minimum = run.policy.min_dob
    if dob and dob < minimum[: len(dob)]:
        run.error(
            codes.IMPLAUSIBLE,
            "/dob",
            f"date of birth (dob) {value} is before {minimum}, the earliest this signer accepts",
        )
        return None
    if dob > run.latest[: len(dob)]:
        run.error(codes.IMPLAUSIBLE, "/dob", f"date of birth (dob) {value} is in the future")
        return None
    return dob


def _text(run: Run, nam: dict[str, Any], key: str, label: str) -> str | None:
    """A string field of ``nam``, NFC-normalised in place; ``None`` if absent or mistyped."""
    value = nam.get(key)
    if value is None:
        if key in nam:
            run.wrong_type(f"/nam/{key}", f"{label} ({key})", "a string", value)
        return None
    if not isinstance(value, str):
        run.wrong_type(f"/nam/{key}", f"{label} ({key})", "a string", value)
        return None
    if not value.isascii():
        value = nam[key] = nfc(value)
    if len(value) > MAX_LENGTH:
        run.error(
            codes.MAX_LENGTH,
            f"/nam/{key}",
            f"{label} ({key}) is {len(value)} characters long; at most {MAX_LENGTH} are allowed",
        )
    return value
