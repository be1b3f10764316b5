"""Realistic Vietnamese vaccination payloads for the benchmark, tests and the README sample.

Names carry Vietnamese diacritics (with their ICAO 9303 transliterations), UVCIs vary, vaccines
are those used in Viet Nam in 2021–2022, all value-set codes are real (PAYLOAD.md).
"""

from __future__ import annotations

import random
from typing import Any

# (written, ICAO 9303 transliteration)
FAMILY_NAMES = (
    ("Nguyễn", "NGUYEN"), ("Trần", "TRAN"), ("Lê", "LE"), ("Phạm", "PHAM"), ("Hoàng", "HOANG"),
    ("Huỳnh", "HUYNH"), ("Phan", "PHAN"), ("Vũ", "VU"), ("Võ", "VO"), ("Đặng", "DANG"),
    ("Bùi", "BUI"), ("Đỗ", "DO"), ("Hồ", "HO"), ("Ngô", "NGO"), ("Dương", "DUONG"), ("Lý", "LY"),
)  # fmt: skip
MIDDLE_NAMES = (
    ("Văn", "VAN"), ("Thị", "THI"), ("Hữu", "HUU"), ("Đức", "DUC"), ("Minh", "MINH"),
    ("Ngọc", "NGOC"), ("Thanh", "THANH"), ("Quốc", "QUOC"), ("Thu", "THU"), ("Xuân", "XUAN"),
)  # fmt: skip
GIVEN_NAMES = (
    ("Đào", "DAO"), ("Hùng", "HUNG"), ("Lan", "LAN"), ("Dũng", "DUNG"), ("Hương", "HUONG"),
    ("Tuấn", "TUAN"), ("Nhung", "NHUNG"), ("Phương", "PHUONG"), ("Quỳnh", "QUYNH"), ("Sơn", "SON"),
    ("Thảo", "THAO"), ("Cường", "CUONG"), ("Yến", "YEN"), ("Khánh", "KHANH"), ("Trí", "TRI"),
)  # fmt: skip
# (mp, ma, vp) of vaccines used in Viet Nam, with their value-set codes
VACCINES = (
    ("EU/1/20/1528", "ORG-100030215", "1119349007"),  # Comirnaty
    ("EU/1/21/1529", "ORG-100001699", "1119305005"),  # Vaxzevria
    ("EU/1/20/1507", "ORG-100031184", "1119349007"),  # Spikevax
    ("BBIBP-CorV", "ORG-100020693", "1157024006"),  # Sinopharm
    ("Sputnik-V", "Gamaleya-Research-Institute", "1119305005"),
    ("Covishield", "ORG-100001981", "1119305005"),
)
ISSUER = "Bộ Y tế Việt Nam (Ministry of Health of Viet Nam)"
_UVCI_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def vaccination_payload(rng: random.Random) -> dict[str, Any]:
    family, middle, given = (
        rng.choice(FAMILY_NAMES),
        rng.choice(MIDDLE_NAMES),
        rng.choice(GIVEN_NAMES),
    )
    mp, ma, vp = rng.choice(VACCINES)
    sd = rng.choice((2, 2, 2, 3))
    dn = rng.randint(1, sd)
    dob = f"{rng.randint(1935, 2010)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    dt = f"{rng.choice((2021, 2022))}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    uvci = "URN:UVCI:01:VN:" + "".join(rng.choice(_UVCI_CHARS) for _ in range(rng.randint(16, 26)))
    return {
        "ver": "1.3.0",
        "nam": {
            "fn": family[0],
            "fnt": family[1],
            "gn": f"{middle[0]} {given[0]}",
            "gnt": f"{middle[1]}<{given[1]}",
        },
        "dob": dob,
        "v": [
            {
                "tg": "840539006",
                "vp": vp,
                "mp": mp,
                "ma": ma,
                "dn": dn,
                "sd": sd,
                "dt": dt,
                "co": "VN",
                "is": ISSUER,
                "ci": uvci,
            }
        ],
    }


def vaccination_payloads(count: int, seed: int = 2022) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [vaccination_payload(rng) for _ in range(count)]
