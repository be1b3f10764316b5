"""The servers' side of rollback-proof key state (issue 8 §7, ``signer.ledger.key_versions``).

Every signing worker reads the ledger's floors at each key refresh, and the registry refuses a
key-state record below its key's floor. One worker per appliance (the reporter) also writes:
it raises a floor when the registry accepts a newer version than the ledger knows (a record the
officers' CLI wrote while the ledger was unreachable), and records each refused replay once, as
a key event in the ledger, besides the log line and the metric every refusal gets.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping

from hsm import HsmToken
from signer import metrics
from signer.keys.state import KeyStateRecord
from signer.ledger import key_versions
from signer.ledger.events import KeyEventLog
from signer.ledger.store import LedgerError, Sql, open_sql

log = logging.getLogger(__name__)

#: A worker waits this long for the key-events chain (officers' CLI runs hold it briefly).
EVENT_LOCK_WAIT = 5.0


class LedgerVersionGuard:
    def __init__(self, target: str, token: HsmToken, *, reporter: bool) -> None:
        self._target, self._token, self._reporter = target, token, reporter
        self._sql: Sql | None = None
        self._recorded: set[tuple[bytes, int]] = set()  # replays written to the ledger

    def floors(self) -> Mapping[bytes, int]:
        """key id → highest accepted version; LedgerError when the ledger cannot be read."""
        try:
            return key_versions.floors(self._connection())
        except LedgerError:
            self._drop()
            raise

    def accepted(self, records: Iterable[KeyStateRecord], floors: Mapping[bytes, int]) -> None:
        if not self._reporter:
            return
        for record in records:
            if record.version > floors.get(record.key_id, 0):
                try:
                    key_versions.accept(
                        self._connection(), record.key_id, record.version, _now_us()
                    )
                except LedgerError as e:
                    self._drop()
                    log.warning("cannot raise the ledger's key-state version floor yet: %s", e)

    def replayed(self, record: KeyStateRecord, floor: int) -> None:
        """Count and (reporter, once per record) write a refused replay to the ledger."""
        if not self._reporter or (record.key_id, record.version) in self._recorded:
            return
        metrics.KEY_STATE_REPLAYS.inc()
        try:
            KeyEventLog(self._target, self._token, wait=EVENT_LOCK_WAIT).append(
                op="refuse-replay",
                officers=[],
                label=record.label,
                kid=None,
                params={
                    "key_id": record.key_id.hex(),
                    "version": record.version,
                    "floor": floor,
                    "record_op": record.op,
                },
                outcome="refused",
            )
        except LedgerError as e:
            log.warning("cannot record the refused key-state replay in the ledger yet: %s", e)
            return
        self._recorded.add((record.key_id, record.version))

    def _connection(self) -> Sql:
        if self._sql is None:
            self._sql = open_sql(self._target)
        return self._sql

    def _drop(self) -> None:
        if self._sql is not None:
            with contextlib.suppress(LedgerError):
                self._sql.close()
            self._sql = None


def _now_us() -> int:
    return time.time_ns() // 1000
