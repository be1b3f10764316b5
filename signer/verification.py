"""Verify RPC: HC1 strings checked against the appliance's trust list.

Trusted: every DSC in the token (any state: a retired key's certificates stay valid until their
exp) plus foreign DSCs from ``[verify] trust_dir``. Pure software, no PKCS#11.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from signer.config import Config
from signer.domain import HcertItem
from signer.errors import RequestError
from signer.hcert.verify import TrustedDsc, TrustStore, Verification, verify_hc1
from signer.keys.registry import KeyRegistry


class VerificationService:
    def __init__(self, config: Config, registry: KeyRegistry) -> None:
        self._registry = registry
        self._max_batch = config.server.max_batch
        self._foreign = (
            tuple(TrustStore.load_pem_dir(config.verify.trust_dir))
            if config.verify.trust_dir
            else ()
        )
        self._cache: tuple[object, TrustStore] = ((), TrustStore(self._foreign))

    def trust(self) -> TrustStore:
        entries = self._registry.entries
        cached_entries, store = self._cache
        if cached_entries is not entries:
            own = [TrustedDsc(e.dsc.certificate, e.dsc.kid) for e in entries]
            store = TrustStore([*own, *self._foreign])
            self._cache = (entries, store)
        return store

    def verify_batch(self, items: Sequence[HcertItem], at: float | None) -> list[Verification]:
        if len(items) > self._max_batch:
            raise RequestError(
                f"batch of {len(items)} items is over the limit of {self._max_batch}"
            )
        moment = dt.datetime.fromtimestamp(at, dt.UTC) if at else dt.datetime.now(dt.UTC)
        trust = self.trust()
        return [verify_hc1(item.hc1, trust, at=moment) for item in items]
