"""``validate_payload``: one DCC payload in, every fault of it out (PAYLOAD.md, issue rules).

Order: the top level (``ver``, ``dob``, ``nam``, the v/t/r group), then the entry. Each check
records its findings and carries on, so a payload with three independent faults yields three
errors. The returned payload is a copy: strings NFC-normalised, ``fnt``/``gnt`` derived when
missing; the caller's object is never modified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from signer.domain import CERT_TYPE_BY_GROUP, CertType, ItemError
from signer.hcert.validation import _codes as codes
from signer.hcert.validation._entries import SPECS, check_entry
from signer.hcert.validation._person import check_dob, check_name
from signer.hcert.validation._policy import ValidationPolicy
from signer.hcert.validation._run import Run, nfc, pointer_token

# PAYLOAD.md "Top level": ver pattern ^\d+.\d+.\d+$ — the schema leaves the dot unescaped; an
# issuer has no reason to accept "1a3b0", so the dot is literal here.
_VERSION_RE: Final = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
_GROUPS: Final = ("v", "t", "r")
_GROUP_NAMES: Final = {"v": "vaccination", "t": "test", "r": "recovery"}
_TOP_KEYS: Final = frozenset({"ver", "nam", "dob", "v", "t", "r"})
_NAME_KEYS: Final = frozenset({"fn", "fnt", "gn", "gnt"})
_ENTRY_KEYS: Final = {group: frozenset(f.key for f in spec) for group, spec in SPECS.items()}


@dataclass(frozen=True, slots=True)
class ValidatedPayload:
    """The outcome of validating one payload.

    ``payload`` is the NFC-normalised copy with derived ``fnt``/``gnt``, ready for CBOR; ``None``
    when there are errors. ``cert_type`` is set whenever exactly one of v/t/r is present, and
    ``uvci`` whenever ``ci`` is a well-formed UVCI — both also on error, so a batch can still
    flag duplicates. ``errors`` holds every error of the item; ``warnings`` what did not stop it
    (e.g. a deprecated code under the "warn" policy).
    """

    payload: dict[str, Any] | None
    cert_type: CertType | None
    uvci: str | None
    errors: tuple[ItemError, ...]
    warnings: tuple[ItemError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_payload(
    payload: object, *, policy: ValidationPolicy, now: datetime
) -> ValidatedPayload:
    """Validate one decoded JSON value as a DCC payload before it is signed.

    ``payload`` may be any JSON value (the result of ``json.loads``); ``now`` must be
    timezone-aware (``ValueError`` otherwise — a caller bug, not an item error).
    """
    run = Run(policy, now)
    if not isinstance(payload, dict):
        run.wrong_type("", "the payload", "a JSON object", payload)
        return ValidatedPayload(None, None, None, tuple(run.errors), ())
    out = _copy_object(run, payload, _TOP_KEYS, "")
    version = _check_version(run, payload)
    dob = check_dob(run, payload)
    nam = payload.get("nam")
    if isinstance(nam, dict):
        out["nam"] = nam_out = _copy_object(run, nam, _NAME_KEYS, "/nam")
        check_name(run, nam_out, version)
    elif nam is None and "nam" not in payload:
        run.error(codes.REQUIRED, "/nam", "the name (nam) is missing")
    else:
        run.wrong_type("/nam", "the name (nam)", "an object with fn, fnt, gn, gnt", nam)

    present = [group for group in _GROUPS if group in payload]
    cert_type = CERT_TYPE_BY_GROUP[present[0]] if len(present) == 1 else None
    if cert_type is None:
        found = " and ".join(present) if present else "none of them"
        run.error(
            codes.GROUP,
            "",
            "a certificate carries exactly one of v (vaccination), t (test) or r (recovery); "
            f"found {found}",
        )
    uvci = None
    for group in present:
        entries = payload[group]
        if not isinstance(entries, list):
            run.wrong_type(
                f"/{group}", group, f"an array with one {_GROUP_NAMES[group]} entry", entries
            )
            continue
        if len(entries) != 1:
            run.error(
                codes.GROUP,
                f"/{group}",
                f"{group} must hold exactly one {_GROUP_NAMES[group]} entry, found {len(entries)}",
            )
        checked = []
        for index, entry in enumerate(entries):
            path = f"/{group}/{index}"
            if not isinstance(entry, dict):
                run.wrong_type(path, f"a {_GROUP_NAMES[group]} entry", "an object", entry)
                continue
            entry_out = _copy_object(run, entry, _ENTRY_KEYS[group], path)
            entry_uvci = check_entry(run, group, entry_out, path, dob)
            checked.append(entry_out)
            if cert_type is not None and len(entries) == 1:
                uvci = entry_uvci
        out[group] = checked
    errors = tuple(run.errors)
    return ValidatedPayload(None if errors else out, cert_type, uvci, errors, tuple(run.warnings))


def _check_version(run: Run, payload: dict[str, Any]) -> str | None:
    """``ver`` present, MAJOR.MINOR.PATCH and supported; returns it when all three hold."""
    value = payload.get("ver")
    if value is None:
        if "ver" in payload:
            run.wrong_type("/ver", "schema version (ver)", 'a string such as "1.3.3"', value)
        else:
            run.error(codes.REQUIRED, "/ver", 'schema version (ver) is missing; use e.g. "1.3.3"')
        return None
    if not isinstance(value, str):
        run.wrong_type("/ver", "schema version (ver)", 'a string such as "1.3.3"', value)
        return None
    if _VERSION_RE.fullmatch(value) is None:
        run.error(
            codes.FORMAT,
            "/ver",
            f'schema version (ver) "{value}" is not of the form MAJOR.MINOR.PATCH, e.g. "1.3.3"',
        )
        return None
    supported = run.policy.supported_versions
    if value not in supported:
        run.error(
            codes.UNSUPPORTED_VERSION,
            "/ver",
            f'schema version (ver) "{value}" is not issued by this signer; use one of '
            + ", ".join(supported),
        )
        return None
    return value


def _copy_object(run: Run, obj: dict[str, Any], known: frozenset[str], path: str) -> dict[str, Any]:
    """Shallow copy of ``obj`` whose unknown fields (kept: no additionalProperties:false in the
    schema) are deep-copied NFC-normalised; known fields are normalised by their own checks."""
    if obj.keys() <= known:
        return dict(obj)
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key in known:
            out[key] = value
        else:
            new_key = nfc(key) if isinstance(key, str) else key
            out[new_key] = run.copy_unknown(value, f"{path}/{pointer_token(key)}", 1)
    return out
