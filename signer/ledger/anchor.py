"""The HSM's side of checkpoints (``signer.ledger.checkpoints``), for whoever holds a session:
a signing worker for the appliance's chain, the key-management CLI for the key-events chain.

It signs heads with the audit key and keeps each chain's latest head in the token, moving it only
from the value the caller expects (compare and swap), so a stale or rolled-back ledger cannot
rewind it. Callers serialise their checkpoints of one chain.
"""

from __future__ import annotations

import hashlib

from hsm import HsmToken, SigningKey
from signer.ledger import checkpoints
from signer.ledger.checkpoints import Head


class HeadKeeper:
    def __init__(self, token: HsmToken) -> None:
        self._token = token
        self._key: tuple[SigningKey, bytes] | None = None

    def stored(self, chain: str) -> bytes:
        """The chain's head as the token keeps it (b"" for none); of two (a replacement cut
        short), the later one."""
        values = [
            data.value for data in self._token.data_objects(checkpoints.HEAD_APPLICATION, chain)
        ]
        return max(values, key=lambda v: checkpoints.unpack_head(chain, v).seq, default=b"")

    def advance(self, head: Head, expected: bytes) -> tuple[bytes, bytes] | bytes:
        """Sign ``head`` and store it as the chain's head if the token still holds ``expected``:
        (audit public key DER, signature); else, writing nothing, the value the token holds."""
        stored = self.stored(head.chain)
        if stored != expected:
            return stored
        if self._key is None:
            self._key = self._token.audit_key(create=True)
            assert self._key is not None
        key, public = self._key
        signature = key.sign_digest(hashlib.sha256(checkpoints.message(head)).digest())
        self._token.put_data(checkpoints.HEAD_APPLICATION, head.chain, checkpoints.pack_head(head))
        return public, signature

    def checkpoint(self, body: bytes) -> bytes:
        """:meth:`advance` over the front ⇄ worker messages of ``signer.ledger.checkpoints``."""
        head, expected = checkpoints.unpack_request(body)
        result = self.advance(head, expected)
        if isinstance(result, bytes):
            return checkpoints.moved_reply(result)
        return checkpoints.signed_reply(*result)
