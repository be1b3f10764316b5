"""ICAO 9303 transliteration, with Vietnamese names first (PAYLOAD.md "nam")."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signer.hcert.validation import transliterate

from .payloads import name_words


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Nguyễn Thị Đào", "NGUYEN<THI<DAO"),
        ("NGUYỄN THỊ ĐÀO", "NGUYEN<THI<DAO"),
        ("nguyễn thị đào", "NGUYEN<THI<DAO"),
        ("Trần Văn Đức", "TRAN<VAN<DUC"),
        ("Lê Thị Hồng Nhung", "LE<THI<HONG<NHUNG"),
        # ư ơ ă â ê ô with each tone mark, lower and upper case
        ("Trương Ngọc Ánh", "TRUONG<NGOC<ANH"),
        ("Phạm Thị Mỹ Dung", "PHAM<THI<MY<DUNG"),
        ("Đặng Quốc Bảo", "DANG<QUOC<BAO"),
        ("Võ Thị Thu Hằng", "VO<THI<THU<HANG"),
        ("Huỳnh Bửu Sơn", "HUYNH<BUU<SON"),
        ("Dương Tấn Lộc", "DUONG<TAN<LOC"),
        ("Ơn Ờ Ở Ỡ Ợ Ớ", "ON<O<O<O<O<O"),
        ("ƯỪ ỨỬ ỮỰ", "UU<UU<UU"),
        ("ắằẳẵặ ẤẦẨẪẬ", "AAAAA<AAAAA"),
        ("ếềểễệ ỐỒỔỖỘ", "EEEEE<OOOOO"),
        ("ĐỖ đỗ", "DO<DO"),
        # hyphenated and apostrophe names
        ("Nguyễn-Trần Minh", "NGUYEN<TRAN<MINH"),
        ("H'Hen Niê", "HHEN<NIE"),
        ("d'Červenková Panklová", "DCERVENKOVA<PANKLOVA"),  # PAYLOAD.md example
        ("O’Brien", "OBRIEN"),
        ("Jiřina-Maria Alena", "JIRINA<MARIA<ALENA"),  # DCC.Core.Types example
        # ICAO letters that are not "drop the accent"
        ("Müller", "MUELLER"),
        ("Ångström", "AANGSTROEM"),
        ("Øster Æbelø", "OESTER<AEBELOE"),
        ("Straße", "STRASSE"),
        ("Þór", "THOR"),
        ("Łukasz", "LUKASZ"),
        # separators collapse; full stops vanish
        ("Smith  -  Jones", "SMITH<JONES"),
        (" Lê ", "LE"),
        ("St. John", "ST<JOHN"),
        ("", ""),
    ],
)
def test_transliterate(name: str, expected: str) -> None:
    assert transliterate(name) == expected


def test_decomposed_input_gives_the_same_result() -> None:
    name = "Nguyễn Thị Đào"
    assert transliterate(unicodedata.normalize("NFD", name)) == "NGUYEN<THI<DAO"


@pytest.mark.parametrize("name", ["Иванов", "王芳", "Ali 2", "Anna!"])
def test_uncovered_characters_raise(name: str) -> None:
    with pytest.raises(ValueError, match="cannot transliterate"):
        transliterate(name)


@given(name_words())
def test_output_is_icao_alphabet_and_idempotent(name: str) -> None:
    out = transliterate(name)
    assert out and set(out) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ<")
    assert "<<" not in out and not out.startswith("<") and not out.endswith("<")
    assert transliterate(out) == out
    # one "<" per separator: Vietnamese words map letter for letter
    assert out.count("<") == name.count(" ") + name.count("-")


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1))
def test_plain_upper_case_is_unchanged(name: str) -> None:
    assert transliterate(name) == name
