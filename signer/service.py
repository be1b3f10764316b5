"""The transport-free core: a batch of items in, exactly one result per item out.

Runs inside a worker's HSM thread (the only thread of the process that touches PKCS#11). Bad
items become :class:`ItemError` values; only faults of the whole request (too many items) or of
the HSM raise. Order of work per item: parse → check → pick key → CWT → sign → encode.
"""

from __future__ import annotations

import base64
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from hsm import HsmError
from signer import metrics
from signer.config import Config
from signer.domain import CERT_TYPE_BY_GROUP, Alg, CertType, ItemError, ItemResult, Signed, SignItem
from signer.errors import BackendError, RequestError
from signer.hcert import base45
from signer.hcert.encode import HC1_PREFIX
from signer.keys.registry import ActiveKey, KeyRegistry, NoKey


class SigningService:
    def __init__(
        self, config: Config, registry: KeyRegistry, clock: Callable[[], float] = time.time
    ) -> None:
        self._config = config
        self._registry = registry
        self._clock = clock
        self._iss = config.issuer.country
        self._validity = {t: config.issuer.validity_seconds(t) for t in CertType}

    def sign_batch(self, items: Sequence[SignItem], alg: Alg | None, rpc: str) -> list[ItemResult]:
        limit = self._config.server.max_batch
        if len(items) > limit:
            raise RequestError(f"batch of {len(items)} items is over the limit of {limit}")
        started = time.perf_counter()
        iat = int(self._clock())
        outcomes: list[ItemResult | _Pending] = []
        signatures: Tally[bytes] = Tally()
        keys: dict[CertType, ActiveKey | NoKey] = {}  # one choice per type: iat is per batch
        try:
            for item in items:
                outcome = self._sign_one(item, alg, iat, keys)
                if isinstance(outcome, _Pending):
                    signatures[outcome.key.entry.dsc.kid] += 1
                outcomes.append(outcome)
        except HsmError as e:
            metrics.HSM_ERRORS.inc()
            raise BackendError(f"the HSM failed while signing: {e}") from e
        finally:
            for kid, count in signatures.items():
                metrics.SIGNATURES.labels(base64.b64encode(kid).decode()).inc(count)
        results = _finish(outcomes)
        self._count(results, rpc, time.perf_counter() - started)
        return results

    def _sign_one(
        self, item: SignItem, alg: Alg | None, iat: int, keys: dict[CertType, ActiveKey | NoKey]
    ) -> ItemResult | _Pending:
        if len(item.payload_json) > self._config.server.max_payload_bytes:
            return ItemResult.failed(
                item.id,
                ItemError(
                    "too_large",
                    "",
                    f"payload of {len(item.payload_json)} characters is over the limit of "
                    f"{self._config.server.max_payload_bytes}",
                ),
            )
        try:
            payload = orjson.loads(item.payload_json)
        except orjson.JSONDecodeError as e:
            return ItemResult.failed(item.id, ItemError("json", "", f"payload is not JSON: {e}"))
        cert_type, errors = _certificate_type(payload)
        if cert_type is None:
            return ItemResult(item.id, errors=errors)
        exp = iat + self._validity[cert_type]
        key = keys.get(cert_type)
        if key is None:
            try:
                key = self._registry.select(cert_type, alg, iat, exp)
            except NoKey as e:
                key = e
            keys[cert_type] = key
        if isinstance(key, NoKey):
            return ItemResult.failed(item.id, ItemError(key.code, "", str(key)))
        return _Pending(
            item.id, key, iat, exp, key.encoder.sign_compressed(payload, self._iss, iat, exp)
        )

    @staticmethod
    def _count(results: list[ItemResult], rpc: str, seconds: float) -> None:
        rejected = [r for r in results if r.signed is None]
        metrics.BATCHES.labels(rpc).inc()
        metrics.BATCH_SECONDS.observe(seconds)
        metrics.ITEMS.labels("signed").inc(len(results) - len(rejected))
        if rejected:
            metrics.ITEMS.labels("rejected").inc(len(rejected))
            for code, count in Tally(e.code for r in rejected for e in r.errors).items():
                metrics.ITEM_ERRORS.labels(code).inc(count)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A signed item waiting for the batch's base45 pass."""

    id: str
    key: ActiveKey
    iat: int
    exp: int
    compressed: bytes


def _finish(outcomes: list[ItemResult | _Pending]) -> list[ItemResult]:
    """Base45-encode every signed item of the batch at once; keep request order."""
    pending = [o for o in outcomes if isinstance(o, _Pending)]
    texts = iter(base45.encode_many([p.compressed for p in pending], HC1_PREFIX))
    return [
        ItemResult(
            o.id, Signed(next(texts), o.key.entry.dsc.kid, o.key.entry.dsc.alg, o.iat, o.exp)
        )
        if isinstance(o, _Pending)
        else o
        for o in outcomes
    ]


def _certificate_type(payload: Any) -> tuple[CertType | None, tuple[ItemError, ...]]:
    """The certificate type: the payload must be an object with exactly one of v / t / r."""
    if not isinstance(payload, dict):
        return None, (ItemError("type", "", "payload must be a JSON object"),)
    groups = [g for g in CERT_TYPE_BY_GROUP if g in payload]
    if len(groups) != 1:
        found = ", ".join(groups) or "none"
        return None, (
            ItemError("group", "", f"payload needs exactly one of v, t, r (found: {found})"),
        )
    return CERT_TYPE_BY_GROUP[groups[0]], ()
