"""The transport-free core: a batch of items in, exactly one result per item out.

Runs inside a worker's HSM thread (the only thread of the process that touches PKCS#11). Bad
items become :class:`ItemError` values; only faults of the whole request (too many items, hash
signing disabled, an unknown kid) or of the HSM raise. Per batch:

    parse JSON → validate (all errors of an item) → flag duplicate UVCIs → pick the key per type
    → CWT and its digest, every item → every signature in the HSM, back to back → COSE → zlib
    → base45 for the whole batch

QR codes are not made here: they cost ~400 signatures each and this is the HSM thread (the
front renders them, ``signer.front.qr``).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import cbor2
import orjson

from hsm import HsmError
from signer import metrics
from signer.config import Config
from signer.domain import (
    GROUP_BY_CERT_TYPE,
    Alg,
    CertType,
    HashItem,
    HashResult,
    HcertItem,
    Issuance,
    ItemError,
    ItemResult,
    Signed,
    SignItem,
)
from signer.errors import BackendError, KeyStateError, RequestError
from signer.front.policy import type_not_allowed
from signer.hcert import base45
from signer.hcert.encode import HC1_PREFIX, claims_head
from signer.hcert.revocation import revocation_hashes, signature_hash
from signer.hcert.validation import find_duplicate_uvcis, validate_payload
from signer.hcert.verify import verify_hc1
from signer.keys.registry import ActiveKey, KeyRegistry, NoKey
from signer.logs import RateLimitedLog

log = logging.getLogger(__name__)
#: Clients decide how often these happen: at most one line per code a minute (issue 9 §8).
_plausibility_log = RateLimitedLog(log)

ALL_TYPES = frozenset(CertType)

#: Item error codes of the signing service itself; payload validation has its own
#: (``signer.hcert.validation.ERROR_CODES``), and Reissue reports a string that fails
#: verification as ``hc1_<reason>`` with a reason from ``signer.hcert.verify.VERIFY_REASONS``.
SERVICE_ERROR_CODES: dict[str, str] = {
    "json": "The payload is not valid JSON.",
    "too_large": "The payload is longer than [server] max_payload_bytes.",
    "no_key": "No active key may sign this certificate type (with the requested algorithm).",
    "dsc_validity": "The certificate would expire after the DSC of the active key.",
    "dsc_not_yet_valid": "The DSC of the active key is not valid yet.",
    "digest_length": "Hash-only signing: the digest is not 32 bytes (SHA-256).",
    "hc1_outside_key_period": "Reissue: the original's iat lies outside its DSC's validity or "
    "after its key's retirement, so this appliance cannot have signed it.",
}

#: Codes that are logged as well as counted (issue 3 §5: plausibility is logged and counted).
_LOGGED_CODES = frozenset({"implausible", "denied_name"})


# Per-item stages are NamedTuples: built once per item on the hot path, they cost half of a
# frozen dataclass (0.3 µs against 0.8 µs).
class Ready(NamedTuple):
    """A validated payload waiting for its signature (or, for a validation-only call, the
    answer itself)."""

    id: str
    payload: dict[str, Any]
    cert_type: CertType
    uvci: str | None
    warnings: tuple[ItemError, ...]
    replaces: bytes | None = None  # Reissue: the SIGNATURE hash of the original

    @property
    def uvci_path(self) -> str:
        """The JSON pointer of the certificate's ``ci``."""
        return f"/{GROUP_BY_CERT_TYPE[self.cert_type]}/0/ci"


class _Choice(NamedTuple):
    """The key, exp and claims head of one certificate type within one batch."""

    key: ActiveKey
    exp: int
    head: bytes


class _Staged(NamedTuple):
    """A validated item with its key, claims and the digest the HSM is to sign."""

    ready: Ready
    key: ActiveKey
    iat: int
    exp: int
    claims: bytes
    digest: bytes


class _Signing(NamedTuple):
    """A signed item waiting for the batch's base45 pass."""

    id: str
    key: ActiveKey
    iat: int
    exp: int
    compressed: bytes
    warnings: tuple[ItemError, ...]
    uvci: tuple[str, str] | None
    issuance: Issuance


class SigningService:
    def __init__(
        self, config: Config, registry: KeyRegistry, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        self._registry = registry
        self._clock = clock
        self._policy = config.validation.policy()
        self._iss = config.issuer.country
        self._validity = {t: config.issuer.validity_seconds(t) for t in CertType}

    # -- RPC entry points ----------------------------------------------------------------------

    def sign_batch(
        self,
        items: Sequence[SignItem],
        alg: Alg | None,
        types: frozenset[CertType] = ALL_TYPES,
    ) -> list[ItemResult]:
        """``types``: the certificate types the calling client may sign ([policy]); an item of
        another type gets ``type_not_allowed`` and the rest of the batch signs."""
        self._check_size(len(items))
        started, now = time.perf_counter(), self._clock()
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        prepared = [self.check_json(item, moment, types) for item in items]
        results = self._sign_prepared(prepared, alg, int(now))
        self._count(results, "signed", time.perf_counter() - started)
        return results

    def validate_batch(
        self, items: Sequence[SignItem], types: frozenset[CertType] = ALL_TYPES
    ) -> list[ItemResult | Ready]:
        """What :meth:`sign_batch` finds wrong with each item, and nothing more: no key is
        chosen and nothing is signed. A valid item comes back as its :class:`Ready`."""
        self._check_size(len(items))
        started = time.perf_counter()
        moment = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        prepared = [self.check_json(item, moment, types) for item in items]
        _refuse_duplicate_uvcis(prepared)
        self._count(prepared, "valid", time.perf_counter() - started)
        return prepared

    def reissue_batch(
        self,
        items: Sequence[HcertItem],
        alg: Alg | None,
        types: frozenset[CertType] = ALL_TYPES,
    ) -> list[ItemResult]:
        """Verify each HC1 against our own DSCs (any state, exp ignored), validate, sign anew."""
        self._check_size(len(items))
        started, now = time.perf_counter(), self._clock()
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        trust = self._registry.trust  # our DSCs in every state: retired keys' output too
        prepared: list[ItemResult | Ready] = []
        for item in items:
            verdict = verify_hc1(item.hc1, trust, check_time=False)
            if not verdict.ok or verdict.decoded is None:
                error = ItemError(f"hc1_{verdict.reason}", "", verdict.message)
                prepared.append(ItemResult.failed(item.id, error))
                continue
            dsc = verdict.dsc.certificate if verdict.dsc is not None else None
            outside = self._registry.outside_key_period(dsc, verdict.decoded.iat)
            if outside is not None:
                message = f"this appliance cannot have signed the original: {outside}"
                error = ItemError("hc1_outside_key_period", "", message)
                prepared.append(ItemResult.failed(item.id, error))
                continue
            ready = self._validated(item.id, verdict.decoded.dcc, moment, types)
            if isinstance(ready, Ready):
                alg = Alg.from_cose_id(verdict.decoded.alg_id)
                ready = ready._replace(replaces=signature_hash(verdict.decoded.signature, alg))
            prepared.append(ready)
        results = self._sign_prepared(prepared, alg, int(now))
        self._count(results, "signed", time.perf_counter() - started)
        return results

    def sign_hashes(self, items: Sequence[HashItem], kid: bytes) -> tuple[Alg, list[HashResult]]:
        """Hash-only signing with the active key ``kid`` (README "Hash-only signing")."""
        if not self._config.hash_only.enabled:
            raise KeyStateError(
                "hash-only signing is disabled on this appliance; an operator can allow it with "
                "[hash_only] enabled = true"
            )
        self._check_size(len(items))
        key = self._registry.active_by_kid(kid, self._clock())
        if key is None:
            raise KeyStateError(
                f"kid {base64.b64encode(kid).decode()} is not an active key with a currently "
                "valid DSC; fetch the current kid with GetTrustList"
            )
        results = []
        try:
            for item in items:
                if len(item.digest) != 32:
                    error = ItemError(
                        "digest_length",
                        "",
                        f"digest must be the 32-byte SHA-256 of the Sig_structure, got "
                        f"{len(item.digest)} bytes",
                    )
                    results.append(HashResult(item.id, errors=(error,)))
                else:
                    results.append(HashResult(item.id, signature=key.sign_digest(item.digest)))
        except HsmError as e:
            raise BackendError(f"the HSM failed while signing: {e}") from e
        signed = sum(1 for r in results if r.signature is not None)
        metrics.SIGNATURES.labels(base64.b64encode(kid).decode()).inc(signed)
        return key.entry.dsc.alg, results

    # -- stages --------------------------------------------------------------------------------

    def _check_size(self, count: int) -> None:
        limit = self._config.server.max_batch
        if count > limit:
            raise RequestError(f"batch of {count} items is over the limit of {limit}")

    def check_json(
        self, item: SignItem, now: dt.datetime, types: frozenset[CertType]
    ) -> ItemResult | Ready:
        """The per-item checks before any key is chosen: size, JSON, ``validate_payload`` with
        the config's policy, the client's certificate types. Reads only the config (``signer
        validate`` runs it with no registry)."""
        limit = self._config.server.max_payload_bytes
        # UTF-8 takes at most 4 bytes a character: only long strings need encoding to measure.
        if len(item.payload_json) * 4 > limit and len(item.payload_json.encode()) > limit:
            error = ItemError(
                "too_large",
                "",
                f"payload of {len(item.payload_json.encode())} bytes (UTF-8) is over the limit "
                f"of {limit}",
            )
            return ItemResult.failed(item.id, error)
        try:
            payload = orjson.loads(item.payload_json)
        except orjson.JSONDecodeError as e:
            return ItemResult.failed(item.id, ItemError("json", "", f"payload is not JSON: {e}"))
        return self._validated(item.id, payload, now, types)

    def _validated(
        self, item_id: str, payload: object, now: dt.datetime, types: frozenset[CertType]
    ) -> ItemResult | Ready:
        checked = validate_payload(payload, policy=self._policy, now=now)
        if checked.payload is None or checked.cert_type is None:
            return ItemResult(item_id, errors=checked.errors)
        if checked.cert_type not in types:
            return ItemResult.failed(item_id, type_not_allowed(checked.cert_type))
        return Ready(item_id, checked.payload, checked.cert_type, checked.uvci, checked.warnings)

    def _sign_prepared(
        self,
        prepared: list[ItemResult | Ready],
        alg: Alg | None,
        iat: int,
    ) -> list[ItemResult]:
        """Sign in passes over the chunk: the claims and digest of every item, then every
        signature back to back, then COSE and zlib (base45 for all at once in :func:`_finish`).
        Back to back, SoftHSM's code and data stay in the CPU's caches: ~15 µs an item less
        than signing between encodings (docs/performance.md)."""
        _refuse_duplicate_uvcis(prepared)
        keys: dict[CertType, _Choice | NoKey] = {}  # one choice per type: iat is per batch
        staged = [
            entry if isinstance(entry, ItemResult) else self._stage(entry, alg, iat, keys)
            for entry in prepared
        ]
        pending = [entry for entry in staged if isinstance(entry, _Staged)]
        signatures: list[bytes] = []
        try:
            for entry in pending:
                signatures.append(entry.key.sign_digest(entry.digest))
        except HsmError as e:
            raise BackendError(f"the HSM failed while signing: {e}") from e
        finally:
            made = Tally(entry.key.entry.dsc.kid for entry in pending[: len(signatures)])
            for kid, count in made.items():
                metrics.SIGNATURES.labels(base64.b64encode(kid).decode()).inc(count)
        signed = iter(signatures)
        return _finish(
            [
                entry if isinstance(entry, ItemResult) else self._signing(entry, next(signed))
                for entry in staged
            ]
        )

    def _stage(
        self, ready: Ready, alg: Alg | None, iat: int, keys: dict[CertType, _Choice | NoKey]
    ) -> ItemResult | _Staged:
        """The item's key (chosen once per certificate type), claims and digest."""
        choice = keys.get(ready.cert_type)
        if choice is None:
            exp = iat + self._validity[ready.cert_type]
            try:
                key = self._registry.select(ready.cert_type, alg, iat, exp)
                choice = _Choice(key, exp, claims_head(self._iss, iat, exp))
            except NoKey as e:
                choice = e
            keys[ready.cert_type] = choice
        if isinstance(choice, NoKey):
            return ItemResult.failed(ready.id, ItemError(choice.code, "", str(choice)))
        key, exp, head = choice
        claims = head + cbor2.dumps(ready.payload)
        return _Staged(ready, key, iat, exp, claims, key.encoder.digest(claims))

    def _signing(self, staged: _Staged, signature: bytes) -> _Signing:
        ready, key = staged.ready, staged.key
        compressed = key.encoder.compressed(staged.claims, signature)
        uvci = (ready.uvci_path, ready.uvci) if ready.uvci is not None else None
        uci, country_uci, signature_digest = revocation_hashes(
            ready.uvci, self._iss, signature, key.entry.dsc.alg
        )
        issuance = Issuance(ready.cert_type, uci, country_uci, signature_digest, ready.replaces)
        return _Signing(
            ready.id, key, staged.iat, staged.exp, compressed, ready.warnings, uvci, issuance
        )

    @staticmethod
    def _count(results: Sequence[ItemResult | Ready], outcome: str, seconds: float) -> None:
        """``outcome``: what a result that is not a rejection counts as (signed or valid)."""
        rejected = [r for r in results if isinstance(r, ItemResult) and r.signed is None]
        metrics.CHUNK_SECONDS.observe(seconds)
        metrics.ITEMS.labels(outcome).inc(len(results) - len(rejected))
        if rejected:
            metrics.ITEMS.labels("rejected").inc(len(rejected))
            for code, count in Tally(e.code for r in rejected for e in r.errors).items():
                metrics.ITEM_ERRORS.labels(code).inc(count)
                if code in _LOGGED_CODES:
                    _plausibility_log.warning(
                        code, "%d item(s) refused by the plausibility policy: %s", count, code
                    )


def _refuse_duplicate_uvcis(prepared: list[ItemResult | Ready]) -> None:
    """Turn each item that repeats an earlier item's UVCI into a ``duplicate_uvci`` rejection."""
    for index, first in find_duplicate_uvcis(
        [p.uvci if isinstance(p, Ready) else None for p in prepared]
    ).items():
        ready = prepared[index]
        assert isinstance(ready, Ready)
        message = (
            f'ci "{ready.uvci}" repeats the UVCI of item {prepared[first].id!r} in this batch; '
            "each certificate needs its own UVCI"
        )
        prepared[index] = ItemResult.failed(
            ready.id, ItemError("duplicate_uvci", ready.uvci_path, message)
        )


def _finish(outcomes: list[ItemResult | _Signing]) -> list[ItemResult]:
    """Base45-encode every signed item of the batch at once; keep request order."""
    signing = [o for o in outcomes if isinstance(o, _Signing)]
    texts = iter(base45.encode_many([s.compressed for s in signing], HC1_PREFIX))
    results = []
    for outcome in outcomes:
        if isinstance(outcome, ItemResult):
            results.append(outcome)
            continue
        hc1 = next(texts)
        dsc = outcome.key.entry.dsc
        signed = Signed(
            hc1,
            dsc.kid,
            dsc.alg,
            outcome.iat,
            outcome.exp,
            outcome.warnings,
            outcome.uvci,
            outcome.issuance,
        )
        results.append(ItemResult(outcome.id, signed))
    return results
