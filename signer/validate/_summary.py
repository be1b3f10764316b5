"""Counts of one ``signer validate`` run: by error code, by JSON path, with example lines."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import IO

_EXAMPLES = 5
_TOP_PATHS = 15


@dataclass
class Summary:
    """Filled record by record in input order; ``examples`` keeps the first lines per code."""

    records: int = 0
    rejected: int = 0
    errors_by_code: Counter[str] = field(default_factory=Counter)
    records_by_code: Counter[str] = field(default_factory=Counter)
    errors_by_path: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, line: int, faults: tuple[tuple[str, str], ...]) -> None:
        self.records += 1
        if not faults:
            return
        self.rejected += 1
        for code, path in faults:
            self.errors_by_code[code] += 1
            self.errors_by_path[path or "(whole payload)"] += 1
        for code in dict.fromkeys(code for code, _ in faults):
            self.records_by_code[code] += 1
            lines = self.examples.setdefault(code, [])
            if len(lines) < _EXAMPLES:
                lines.append(line)

    def share(self, count: int) -> float:
        """``count`` as a percentage of the records."""
        return 100.0 * count / self.records if self.records else 0.0

    def write(self, out: IO[str]) -> None:
        """The human summary (stderr)."""
        out.write(
            f"{self.records} record(s), {self.records - self.rejected} valid, "
            f"{self.rejected} rejected ({self.share(self.rejected):.1f} %)\n"
        )
        if not self.rejected:
            return
        out.write(f"{'code':28} {'errors':>8} {'records':>8} {'share':>7}  example lines\n")
        for code, count in self.errors_by_code.most_common():
            records = self.records_by_code[code]
            examples = ", ".join(map(str, self.examples[code]))
            out.write(f"{code:28} {count:8} {records:8} {self.share(records):6.1f}%  {examples}\n")
        out.write(f"{'path':40} {'errors':>8}\n")
        for path, count in self.errors_by_path.most_common(_TOP_PATHS):
            out.write(f"{path:40} {count:8}\n")
        if len(self.errors_by_path) > _TOP_PATHS:
            out.write(f"… and {len(self.errors_by_path) - _TOP_PATHS} more path(s)\n")
