"""Valid DCC payloads and hypothesis strategies shared by the validation tests.

Every builder returns a fresh dict, so a test may mutate it freely. The fixed clock ``NOW`` is
well after every date used here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from signer.hcert.validation import ValidationPolicy, transliterate, uvci_checksum

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
POLICY = ValidationPolicy()
VN_CI = "URN:UVCI:01:VN:MOH/2021/0012345678"


def with_checksum(uvci: str) -> str:
    return f"{uvci}#{uvci_checksum(uvci)}"


def vaccination() -> dict[str, Any]:
    return {
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
                "is": "Bộ Y tế",
                "ci": with_checksum(VN_CI),
            }
        ],
    }


def lab_test() -> dict[str, Any]:
    return {
        "ver": "1.3.3",
        "nam": {"fn": "Trần", "fnt": "TRAN", "gn": "Văn Đức", "gnt": "VAN<DUC"},
        "dob": "1990-02",
        "t": [
            {
                "tg": "840539006",
                "tt": "LP217198-3",
                "ma": "1232",
                "nm": "Panbio",
                "sc": "2021-10-01T08:30:00+07:00",
                "tr": "260415000",
                "tc": "Bệnh viện Bạch Mai",
                "co": "VN",
                "is": "Bộ Y tế",
                "ci": with_checksum("URN:UVCI:01:VN:TEST/0001"),
            }
        ],
    }


def recovery() -> dict[str, Any]:
    return {
        "ver": "1.3.3",
        "nam": {"fn": "Lê", "fnt": "LE", "gn": "Thị Hồng Nhung", "gnt": "THI<HONG<NHUNG"},
        "dob": "1979",
        "r": [
            {
                "tg": "840539006",
                "fr": "2021-08-01",
                "co": "VN",
                "is": "Bộ Y tế",
                "df": "2021-08-12",
                "du": "2022-01-28",
                "ci": "URN:UVCI:01:VN:REC/77",
            }
        ],
    }


# --- hypothesis: valid payloads -------------------------------------------------------------

_VIET_LETTERS = (
    "aăâbcdđeêghiklmnoôơpqrstuưvxyáàảãạắằẳẵặấầẩẫậéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ"
)
_UVCI_BODY = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/"


def _day(lo: date, hi: date) -> st.SearchStrategy[date]:
    return st.dates(min_value=lo, max_value=hi)


@st.composite
def name_words(draw: st.DrawFn) -> str:
    """1–3 Vietnamese-looking words, randomly capitalised, joined by spaces or a hyphen."""
    words = draw(
        st.lists(st.text(alphabet=_VIET_LETTERS, min_size=1, max_size=8), min_size=1, max_size=3)
    )
    words = [w.upper() if draw(st.booleans()) else w.capitalize() for w in words]
    return draw(st.sampled_from([" ", "-"])).join(words)


@st.composite
def uvcis(draw: st.DrawFn, country: str = "VN") -> str:
    body = draw(st.text(alphabet=_UVCI_BODY, min_size=1, max_size=40))
    uvci = f"URN:UVCI:01:{country}:{body}"
    return with_checksum(uvci) if draw(st.booleans()) else uvci


@st.composite
def valid_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Any valid 1.3.x payload: one of v/t/r, dob at any precision, names with/without fnt."""
    dob = draw(_day(date(1900, 1, 2), date(2020, 12, 31)))
    dob_text = dob.isoformat()[: draw(st.sampled_from([0, 4, 7, 10]))]
    nam: dict[str, Any] = {}
    for key in draw(st.sampled_from([("fn",), ("gn",), ("fn", "gn")])):
        nam[key] = draw(name_words())
        if draw(st.booleans()):  # sometimes leave fnt/gnt to derivation
            nam[key + "t"] = transliterate(nam[key])
    event = draw(_day(dob + timedelta(days=1), NOW.date() - timedelta(days=1)))
    group = draw(st.sampled_from(["v", "t", "r"]))
    common = {"tg": "840539006", "co": draw(st.sampled_from(["VN", "DE", "FR", "XK"]))}
    # NFC may lengthen text (e.g. U+0958 has no composed form), so stay well below 80.
    common["is"] = draw(st.text(min_size=1, max_size=25))
    common["ci"] = draw(uvcis())
    entry: dict[str, Any]
    if group == "v":
        entry = {
            "vp": draw(st.sampled_from(["1119349007", "28531000087107", "1119305005"])),
            "mp": draw(st.sampled_from(["EU/1/20/1528", "EU/1/20/1507", "Covishield"])),
            "ma": draw(st.sampled_from(["ORG-100030215", "ORG-100031184", "ORG-100001981"])),
            "dn": draw(st.integers(1, 9)),
            "sd": draw(st.integers(1, 9)),
            "dt": event.isoformat(),
        }
    elif group == "t":
        offset = draw(st.sampled_from(["Z", "+07:00", "-05:30", "+00:00"]))
        entry = {
            "tt": draw(st.sampled_from(["LP6464-4", "LP217198-3"])),
            "sc": f"{event.isoformat()}T{draw(st.integers(0, 23)):02d}:15:00{offset}",
            "tr": draw(st.sampled_from(["260415000", "260373001"])),
        }
        if draw(st.booleans()):
            entry["ma"] = draw(st.sampled_from(["1232", "1468", "345"]))
    else:
        valid_from = event + timedelta(days=11)
        entry = {
            "fr": event.isoformat(),
            "df": valid_from.isoformat(),
            "du": (valid_from + timedelta(days=draw(st.integers(0, 180)))).isoformat(),
        }
    return {
        "ver": draw(st.sampled_from(["1.3.2", "1.3.3"])),
        "nam": nam,
        "dob": dob_text,
        group: [{**common, **entry}],
    }


# --- JSON-pointer edits (the tests name corruptions by the path they expect in the error) --------


def _parent(doc: Any, pointer: str) -> tuple[Any, str | int]:
    parts = pointer.split("/")[1:]
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    last = parts[-1]
    return doc, int(last) if isinstance(doc, list) else last


def set_at(doc: Any, pointer: str, value: Any) -> None:
    parent, key = _parent(doc, pointer)
    parent[key] = value


def delete_at(doc: Any, pointer: str) -> None:
    parent, key = _parent(doc, pointer)
    del parent[key]
