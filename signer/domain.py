"""Domain values shared by every layer between the servicer and the HSM.

Immutable values only (frozen dataclasses, and NamedTuples for the per-item hot-path types):
they cross thread and layer boundaries and must not change under anyone's feet. Protobuf types
never get past ``signer/workers/convert.py`` and the front's handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class CertType(StrEnum):
    """The three DCC certificate types (PAYLOAD.md: exactly one of v / t / r)."""

    VACCINATION = "vaccination"
    TEST = "test"
    RECOVERY = "recovery"


#: Payload group key → certificate type (PAYLOAD.md "Top level").
CERT_TYPE_BY_GROUP: dict[str, CertType] = {
    "v": CertType.VACCINATION,
    "t": CertType.TEST,
    "r": CertType.RECOVERY,
}


GROUP_BY_CERT_TYPE: dict[CertType, str] = {t: g for g, t in CERT_TYPE_BY_GROUP.items()}


class Alg(StrEnum):
    """COSE signature algorithms an HCERT may use (HCERT.md §5)."""

    ES256 = "ES256"
    PS256 = "PS256"

    @property
    def cose_id(self) -> int:
        return _COSE_ALG_IDS[self]

    @classmethod
    def from_cose_id(cls, value: object) -> Alg | None:
        for alg, ident in _COSE_ALG_IDS.items():
            if ident == value:
                return alg
        return None


_COSE_ALG_IDS: dict[Alg, int] = {Alg.ES256: -7, Alg.PS256: -37}


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one item of a batch was not signed.

    ``code`` is stable and machine-readable (listed in the README), ``path`` a JSON pointer into
    the item's payload (RFC 6901, ``""`` for the whole payload), ``message`` is for a person.
    """

    code: str
    path: str
    message: str


# SignItem, Signed and ItemResult are made once per certificate on the signing hot path, so they
# are NamedTuples: as immutable as a frozen dataclass, and built in 0.3 µs instead of 0.8 µs
# (docs/performance.md). The other domain values are frozen dataclasses.


class SignItem(NamedTuple):
    """One certificate to sign: a client-chosen id and the DCC JSON payload (UTF-8)."""

    id: str
    payload_json: str


class Issuance(NamedTuple):
    """What the ledger records of a signed item beside its kid, alg, iat and exp: its type and
    the revocation hashes (``signer.hcert.revocation``); ``replaces`` is the SIGNATURE hash of
    the certificate a Reissue replaces. Hash-only signatures have no type and no UVCI."""

    cert_type: CertType | None
    uci: bytes | None
    country_uci: bytes | None
    signature: bytes
    replaces: bytes | None = None


class Signed(NamedTuple):
    """A signed certificate: the ``HC1:`` string and what a client needs to file it."""

    hc1: str
    kid: bytes
    alg: Alg
    iat: int
    exp: int
    warnings: tuple[ItemError, ...] = ()
    uvci: tuple[str, str] | None = None  # (JSON path of ci, UVCI): duplicates across chunks
    issuance: Issuance | None = None  # for the ledger


@dataclass(frozen=True, slots=True)
class HcertItem:
    """An ``HC1:`` string to verify or re-issue, with a client-chosen id."""

    id: str
    hc1: str


@dataclass(frozen=True, slots=True)
class HashItem:
    """Hash-only signing: SHA-256 over a Sig_structure the client built."""

    id: str
    digest: bytes


@dataclass(frozen=True, slots=True)
class HashResult:
    """Exactly one per item: a raw COSE signature, or the errors."""

    id: str
    signature: bytes | None = None
    errors: tuple[ItemError, ...] = ()


class ItemResult(NamedTuple):
    """Exactly one per item: ``signed`` is set, or ``errors`` is non-empty — never both."""

    id: str
    signed: Signed | None = None
    errors: tuple[ItemError, ...] = ()

    @classmethod
    def failed(cls, item_id: str, *errors: ItemError) -> ItemResult:
        return cls(id=item_id, errors=errors)
