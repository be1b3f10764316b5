"""Micro-benchmark of ``validate_payload`` (not a test: timing goals live here, STYLE.md "Tests").

Run: ``.venv/bin/python tests/unit/hcert/validation/bench_validation.py``. Prints µs per item for
a typical Vietnamese vaccination payload, a test payload and an invalid payload (several faults).
Target: ≤ 15 µs for the vaccination item on one core.
"""

from __future__ import annotations

import copy
import timeit
from datetime import UTC, datetime
from typing import Any

from signer.hcert.validation import ValidationPolicy, uvci_checksum, validate_payload

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
POLICY = ValidationPolicy(uvci_country="VN", require_uvci_checksum=True)
_CI = "URN:UVCI:01:VN:MOH/2021/0012345678"

VACCINATION: dict[str, Any] = {
    "ver": "1.3.3",
    "nam": {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Thị Đào", "gnt": "THI<DAO"},
    "dob": "1985-07-14",
    "v": [
        {
            "tg": "840539006",
            "vp": "1119349007",
            "mp": "EU/1/20/1528",
            "ma": "ORG-100030215",
            "dn": 2,
            "sd": 2,
            "dt": "2021-09-20",
            "co": "VN",
            "is": "Bộ Y tế (Ministry of Health of Viet Nam)",
            "ci": f"{_CI}#{uvci_checksum(_CI)}",
        }
    ],
}
TEST: dict[str, Any] = {
    "ver": "1.3.3",
    "nam": {"fn": "Trần", "gn": "Văn Đức"},  # fnt/gnt derived
    "dob": "1990-02",
    "t": [
        {
            "tg": "840539006",
            "tt": "LP217198-3",
            "ma": "1232",
            "sc": "2021-10-01T08:30:00+07:00",
            "tr": "260415000",
            "tc": "Bệnh viện Bạch Mai",
            "co": "VN",
            "is": "Bộ Y tế",
            "ci": f"{_CI}#{uvci_checksum(_CI)}",
        }
    ],
}
INVALID = copy.deepcopy(VACCINATION)
INVALID["nam"]["fnt"] = "NGUYEN<VAN"
INVALID["v"][0].update({"dt": "2021-02-30", "mp": "EU/1/99/0000", "dn": 0, "ci": _CI + "#A"})


def bench(name: str, payload: dict[str, Any], number: int = 50_000) -> None:
    result = validate_payload(payload, policy=POLICY, now=NOW)
    best = min(
        timeit.repeat(
            lambda: validate_payload(payload, policy=POLICY, now=NOW), number=number, repeat=5
        )
    )
    print(f"{name:<12} {best / number * 1e6:6.2f} µs/item  errors={len(result.errors)}")


def main() -> None:
    bench("vaccination", VACCINATION)
    bench("test", TEST)
    bench("invalid", INVALID)


if __name__ == "__main__":
    main()
