"""Checks of the person: ``nam`` (fn/fnt/gn/gnt) and ``dob`` (PAYLOAD.md "Top level", "nam")."""

from __future__ import annotations

import re
from typing import Any, Final

from signer.hcert.validation import _codes as codes
from signer.hcert.validation._dates import DateTuple, parse_dob
from signer.hcert.validation._names import first_unsupported, icao_or_none
from signer.hcert.validation._policy import FNT_REQUIRED_VERSIONS
from signer.hcert.validation._run import Run, nfc, show_day

#: PAYLOAD.md "nam": fnt/gnt pattern ^[A-Z<]*$, maxLength 80 like every name field.
_ICAO_RE: Final = re.compile(r"[A-Z<]*")
_MAX_LENGTH: Final = 80
#: (name key, transliterated key, what a clerk calls them)
_PAIRS: Final = (
    ("fn", "fnt", "surname", "standardised surname"),
    ("gn", "gnt", "forename", "standardised forename"),
)


def check_name(run: Run, nam: dict[str, Any], version: str | None) -> None:
    """Check ``nam`` (a private copy): NFC-normalises it and derives ``fnt``/``gnt`` in place."""
    out = nam
    errors_before = len(run.errors)
    derive = run.policy.derive_transliteration
    deny = run.policy.name_deny_list
    has_transliteration = False
    for key, t_key, label, t_label in _PAIRS:
        name = _text(run, nam, key, label, out)
        translit = _text(run, nam, t_key, t_label, out)
        valid = translit is not None and len(translit) <= _MAX_LENGTH
        if translit is not None and _ICAO_RE.fullmatch(translit) is None:
            valid = False
            run.error(
                codes.FORMAT,
                f"/nam/{t_key}",
                f'{t_label} ({t_key}) "{translit}" may only contain the letters A-Z and "<" '
                "(ICAO 9303)",
            )
        if name is not None:
            expected = icao_or_none(name)
            if expected is None:
                bad = first_unsupported(name)
                if valid:
                    run.warn(
                        codes.TRANSLITERATION_UNCHECKED,
                        f"/nam/{t_key}",
                        f'{t_key} "{translit}" was not checked: {key} "{name}" contains "{bad}", '
                        "which this signer cannot transliterate (Latin script only)",
                    )
                elif derive and t_key not in nam:
                    run.error(
                        codes.TRANSLITERATION_UNSUPPORTED,
                        f"/nam/{key}",
                        f'{key} "{name}" contains "{bad}", which this signer cannot transliterate '
                        f"(Latin script only); supply {t_key} in ICAO 9303 form",
                    )
            elif t_key not in nam:
                if derive and expected:
                    if len(expected) > _MAX_LENGTH:
                        run.error(
                            codes.MAX_LENGTH,
                            f"/nam/{t_key}",
                            f'the ICAO 9303 transliteration of {key} "{name}" is {len(expected)} '
                            f"characters long; at most {_MAX_LENGTH} are allowed in {t_key}",
                        )
                    else:
                        out[t_key] = translit = expected
                        valid = True
            # A longer transliteration may be cut at 80 characters by the issuer.
            elif valid and translit != expected and translit != expected[:_MAX_LENGTH]:
                run.error(
                    codes.TRANSLITERATION_MISMATCH,
                    f"/nam/{t_key}",
                    f'{t_key} "{translit}" is not the ICAO 9303 transliteration of {key} "{name}" '
                    f'(expected "{expected}")',
                )
        if valid and translit:
            has_transliteration = True
            if translit in deny:
                run.error(
                    codes.DENIED_NAME,
                    f"/nam/{t_key}",
                    f'{t_label} ({t_key}) "{translit}" is on the deny list of this signer',
                )
    if version in FNT_REQUIRED_VERSIONS and "fnt" not in out:
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


def check_dob(run: Run, payload: dict[str, Any]) -> DateTuple | None:
    """Check ``dob``; returns it at its own precision, or ``None`` when it cannot be compared."""
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
    minimum = run.policy.min_dob_day
    if dob and dob < minimum[: len(dob)]:
        run.error(
            codes.IMPLAUSIBLE,
            "/dob",
            f"date of birth (dob) {value} is before {show_day(minimum)}, the earliest this "
            "signer accepts",
        )
        return None
    if dob > run.latest[: len(dob)]:
        run.error(codes.IMPLAUSIBLE, "/dob", f"date of birth (dob) {value} is in the future")
        return None
    return dob


def _text(run: Run, obj: dict[str, Any], key: str, label: str, out: dict[str, Any]) -> str | None:
    """A string field of ``nam``, NFC-normalised into ``out``; ``None`` if absent or mistyped."""
    value = obj.get(key)
    if value is None:
        if key in obj:
            run.wrong_type(f"/nam/{key}", f"{label} ({key})", "a string", value)
        return None
    if not isinstance(value, str):
        run.wrong_type(f"/nam/{key}", f"{label} ({key})", "a string", value)
        return None
    if not value.isascii():
        value = out[key] = nfc(value)
    if len(value) > _MAX_LENGTH:
        run.error(
            codes.MAX_LENGTH,
            f"/nam/{key}",
            f"{label} ({key}) is {len(value)} characters long; at most {_MAX_LENGTH} are allowed",
        )
    return value
