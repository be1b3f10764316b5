"""What an operator may tune about payload validation, checked once at construction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from signer.hcert.validation._dates import parse_date
from signer.hcert.validation._valuesets import COUNTRY_2_CODES

#: Schema versions whose rules this package implements: 1.3.x (PAYLOAD.md "Schema history").
#: Older versions differ in ways an issuer must honour (maxLength 50, dn/sd ≤ 9, ``tc``
#: required, ``fnt`` required), so signing e.g. a "1.0.0" payload checked by 1.3 rules could yield
#: a certificate that breaks its own declared schema. PAYLOAD.md: use 1.3.0 or later for new ones.
IMPLEMENTED_VERSIONS: Final = ("1.3.0", "1.3.1", "1.3.2", "1.3.3")
#: Before 1.3.2 ``fnt`` was mandatory; since then ``fnt`` or ``gnt`` (CHANGELOG 1.3.2).
FNT_REQUIRED_VERSIONS: Final = frozenset({"1.3.0", "1.3.1"})

_ICAO_NAME: Final = re.compile(r"[A-Z<]+")


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """Operator choices for :func:`validate_payload`; invalid values raise ``ValueError``.

    ``deprecated_codes``: a value-set code with ``active: false`` is a warning or an error.
    ``derive_transliteration``: fill a missing ``fnt``/``gnt`` from ``fn``/``gn``.
    ``clock_skew_seconds``: how far past ``now`` a date may be before it is "in the future".
    ``require_uvci_checksum``: refuse a ``ci`` without its ``#`` check character.
    ``uvci_country``: when set, the UVCI country must be this ISO 3166-1 code (e.g. ``"VN"``).
    ``min_dob``: a date of birth before this ``YYYY-MM-DD`` is implausible.
    ``name_deny_list``: ``fnt``/``gnt`` values refused outright (ICAO form, e.g. ``"TEST<TEST"``).
    ``supported_versions``: ``ver`` values accepted; a subset of :data:`IMPLEMENTED_VERSIONS`.
    """

    deprecated_codes: Literal["warn", "refuse"] = "warn"
    derive_transliteration: bool = True
    clock_skew_seconds: int = 300
    require_uvci_checksum: bool = False
    uvci_country: str | None = None
    min_dob: str = "1900-01-02"
    name_deny_list: tuple[str, ...] = ()
    supported_versions: tuple[str, ...] = IMPLEMENTED_VERSIONS

    def __post_init__(self) -> None:
        if self.deprecated_codes not in ("warn", "refuse"):
            raise ValueError(
                f'deprecated_codes must be "warn" or "refuse", not {self.deprecated_codes!r}'
            )
        if self.clock_skew_seconds < 0:
            raise ValueError(f"clock_skew_seconds must be >= 0, not {self.clock_skew_seconds}")
        if self.uvci_country is not None and self.uvci_country not in COUNTRY_2_CODES:
            raise ValueError(
                f"uvci_country {self.uvci_country!r} is not an ISO 3166-1 alpha-2 code"
            )
        if parse_date(self.min_dob) is None:
            raise ValueError(f"min_dob {self.min_dob!r} is not a YYYY-MM-DD date")
        for name in self.name_deny_list:
            if _ICAO_NAME.fullmatch(name) is None:
                raise ValueError(
                    f"name_deny_list entry {name!r} is not in ICAO form (A-Z and <, e.g. TEST<TEST)"
                )
        unknown = [v for v in self.supported_versions if v not in IMPLEMENTED_VERSIONS]
        if unknown or not self.supported_versions:
            raise ValueError(
                f"supported_versions must be a non-empty subset of {IMPLEMENTED_VERSIONS}, "
                f"got {self.supported_versions}"
            )
