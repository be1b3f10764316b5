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
from signer.hcert.verify import TrustStore, Verification, verify_hc1
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
        self._cache: tuple[TrustStore | None, TrustStore] = (None, TrustStore(self._foreign))

    def trust(self) -> TrustStore:
        """The registry's own DSCs plus the foreign ones, rebuilt when the registry's change."""
        own = self._registry.trust
        cached_own, store = self._cache
        if cached_own is not own:
            store = TrustStore([*own, *self._foreign])
            self._cache = (own, store)
        return store

    def verify_batch(self, items: Sequence[HcertItem], at: float | None) -> list[Verification]:
        if len(items) > self._max_batch:
            raise RequestError(
                f"batch of {len(items)} items is over the limit of {self._max_batch}"
            )
        moment = dt.datetime.fromtimestamp(at, dt.UTC) if at else dt.datetime.now(dt.UTC)
        trust = self.trust()
        return [verify_hc1(item.hc1, trust, at=moment) for item in items]
