"""Key lifecycle state, stored as a CKO_DATA record in the HSM next to the key.

Keeping the state in the token (not in a local file) lets every worker process and every replica
sharing the HSM agree on which key signs; each re-reads it every ``key_refresh_seconds``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

STATE_APPLICATION = "hcert-signer/key-state/v1"


class KeyState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class KeyStateRecord:
    state: KeyState
    since: int  # seconds since the epoch: when the state took / takes effect

    def to_bytes(self) -> bytes:
        return json.dumps({"state": self.state.value, "since": self.since}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyStateRecord:
        data = json.loads(raw)
        return cls(state=KeyState(data["state"]), since=int(data["since"]))

    def effective(self, now: float) -> KeyState:
        """A scheduled activation is still pending until its time comes."""
        if self.state is KeyState.ACTIVE and now < self.since:
            return KeyState.PENDING
        return self.state
