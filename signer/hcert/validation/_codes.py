"""Stable item-error codes of payload validation, each with a one-line meaning.

Clients branch on these codes, so a code is never renamed or reused for another meaning; new rules
get new codes. ``docs/errors.md`` lists the same table (a unit test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

TYPE: Final = "type"
REQUIRED: Final = "required"
FORMAT: Final = "format"
MAX_LENGTH: Final = "max_length"
VALUE_SET: Final = "value_set"
DEPRECATED_CODE: Final = "deprecated_code"
RANGE: Final = "range"
DATE_ORDER: Final = "date_order"
FUTURE_DATE: Final = "future_date"
TRANSLITERATION_MISMATCH: Final = "transliteration_mismatch"
TRANSLITERATION_UNSUPPORTED: Final = "transliteration_unsupported"
TRANSLITERATION_UNCHECKED: Final = "transliteration_unchecked"
UVCI_FORMAT: Final = "uvci_format"
UVCI_CHECKSUM: Final = "uvci_checksum"
UVCI_COUNTRY: Final = "uvci_country"
DUPLICATE_UVCI: Final = "duplicate_uvci"
UNSUPPORTED_VERSION: Final = "unsupported_version"
GROUP: Final = "group"
IMPLAUSIBLE: Final = "implausible"
DENIED_NAME: Final = "denied_name"

#: Every code → what it means (README / docs/errors.md).
ERROR_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        TYPE: "A field has the wrong JSON type (e.g. a number where a string is expected).",
        REQUIRED: "A required field is missing.",
        FORMAT: "A string does not have the required format (date, date-time, pattern).",
        MAX_LENGTH: "A string is longer than the schema allows (80 characters).",
        VALUE_SET: "A coded field holds a code that is not in its EU DCC value set.",
        DEPRECATED_CODE: "A code is deprecated in its value set (error or warning, per policy).",
        RANGE: "A dose number (dn) or total doses (sd) is below 1.",
        DATE_ORDER: "Two dates are in the wrong order (e.g. vaccination before birth).",
        FUTURE_DATE: "A vaccination, sample or first-positive date lies in the future.",
        TRANSLITERATION_MISMATCH: "fnt/gnt is not the ICAO 9303 transliteration of fn/gn.",
        TRANSLITERATION_UNSUPPORTED: (
            "fn/gn has characters this signer cannot transliterate, and fnt/gnt is missing."
        ),
        TRANSLITERATION_UNCHECKED: (
            "Warning: fn/gn has characters this signer cannot transliterate; fnt/gnt not checked."
        ),
        UVCI_FORMAT: "The certificate identifier (ci) is not a well-formed UVCI.",
        UVCI_CHECKSUM: "The UVCI checksum character is wrong, or missing when policy requires it.",
        UVCI_COUNTRY: "The UVCI country is not the country this signer issues for.",
        DUPLICATE_UVCI: "Another item of the same batch has the same UVCI.",
        UNSUPPORTED_VERSION: "The schema version (ver) is not one this signer issues.",
        GROUP: "Not exactly one of v/t/r, or that group does not hold exactly one entry.",
        IMPLAUSIBLE: "The date of birth is before the configured minimum or in the future.",
        DENIED_NAME: "A transliterated name (fnt/gnt) is on the configured deny list.",
    }
)
