"""Which key-state record counts: one pure function for the servers and ``signer keys`` alike.

Issue 8 §7: the servers' registry and the officers' CLI (``signer keys list``, proposals) used
to decide this each on their own and could disagree. :func:`records_that_count` is the only
place the rule lives (STYLE.md "One place for each decision"):

- a record that does not parse, or whose content names another label than the object it is
  filed under, never counts;
- a record counts only when ``[officers] required_approvals`` distinct roster officers signed
  its exact content (ADR 0005);
- among approved records for one label the highest ``version`` wins, then the newest
  ``issued_at`` (ties: the larger stored bytes, so the choice never depends on the order the
  token lists objects in);
- an approved record older than one the caller has already seen for that label is a replay and
  is ignored (``newest_seen``: a server remembers while it runs);
- so is an approved record whose ``version`` is below the highest the ledger has accepted for
  its key (``floors``, issue 8 §7): that survives restarts and holds on every replica.

Unapproved records never count; the newest one per label is still handed back, because an
officer must see a freshly generated key (its ``generate`` record has no approvals yet).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from signer.keys.officers import ApprovalPolicy
from signer.keys.state import KeyStateRecord


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A key-state data object as the token holds it: the label it is filed under, its bytes."""

    label: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Ignored:
    """A record that does not count, and why (for the log)."""

    label: str
    reason: str
    replay: KeyStateRecord | None = None  # an approved record below the ledger's floor


class VersionGuard(Protocol):
    """Where the highest accepted version of each key is kept (the ledger, issue 8 §7)."""

    def floors(self) -> Mapping[bytes, int]:
        """key id → highest accepted version; raises when it cannot be read."""
        ...

    def accepted(self, records: Iterable[KeyStateRecord], floors: Mapping[bytes, int]) -> None:
        """These records count now: raise the floors they are above."""
        ...

    def replayed(self, record: KeyStateRecord, floor: int) -> None:
        """This approved record was refused as a replay (below ``floor``)."""
        ...


@dataclass(frozen=True, slots=True)
class RecordsThatCount:
    counted: Mapping[str, KeyStateRecord]  # label → the approved record that counts
    unapproved: Mapping[str, KeyStateRecord]  # label → its newest unapproved record
    ignored: tuple[Ignored, ...]  # what did not count, except unapproved ``generate`` records

    def newest_seen(self) -> dict[str, int]:
        """label → ``issued_at`` of the counted record: what a caller remembers against replay."""
        return {label: record.issued_at for label, record in self.counted.items()}


def records_that_count(
    stored: Iterable[StoredRecord],
    policy: ApprovalPolicy,
    newest_seen: Mapping[str, int] | None = None,
    floors: Mapping[bytes, int] | None = None,
) -> RecordsThatCount:
    """Decide, for every label, which key-state record counts (module docstring). ``floors``:
    key id → the highest version the ledger has accepted for that key."""
    seen, lowest = newest_seen or {}, floors or {}
    counted: dict[str, tuple[KeyStateRecord, bytes]] = {}
    unapproved: dict[str, tuple[KeyStateRecord, bytes]] = {}
    ignored: list[Ignored] = []
    for item in stored:
        try:
            record = KeyStateRecord.from_bytes(item.value)
        except (ValueError, KeyError, TypeError) as e:
            ignored.append(Ignored(item.label, f"ignoring unreadable key-state record: {e}"))
            continue
        if record.label != item.label:
            ignored.append(
                Ignored(item.label, "ignoring a key-state record filed under another label")
            )
            continue
        if not record.approved(policy):
            _keep_newest(unapproved, record, item.value)
            if record.op != "generate":  # a new key's record: approvals come with its import
                ignored.append(
                    Ignored(
                        item.label,
                        f"ignoring a key-state record ({record.op}) without "
                        f"{policy.required} valid officer approvals",
                    )
                )
            continue
        floor = lowest.get(record.key_id, 0)
        if record.version < floor:
            ignored.append(
                Ignored(
                    item.label,
                    f"refusing a replayed key-state record: version {record.version} ({record.op}) "
                    f"is below version {floor}, the highest the ledger has accepted for this key",
                    replay=record,
                )
            )
            continue
        if record.issued_at < seen.get(record.label, 0):
            ignored.append(
                Ignored(item.label, "ignoring an approved key-state record older than one seen")
            )
            continue
        _keep_newest(counted, record, item.value)
    return RecordsThatCount(
        counted={label: record for label, (record, _) in counted.items()},
        unapproved={label: record for label, (record, _) in unapproved.items()},
        ignored=tuple(ignored),
    )


def _keep_newest(
    chosen: dict[str, tuple[KeyStateRecord, bytes]], record: KeyStateRecord, raw: bytes
) -> None:
    current = chosen.get(record.label)
    if current is None or (record.version, record.issued_at, raw) > (
        current[0].version,
        current[0].issued_at,
        current[1],
    ):
        chosen[record.label] = (record, raw)
