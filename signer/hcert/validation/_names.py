"""ICAO 9303 transliteration of Latin-script names (PAYLOAD.md "nam"; ICAO Doc 9303 Part 3 §6).

``fnt``/``gnt`` must be the ICAO 9303 machine-readable form of ``fn``/``gn``: upper case ``A–Z``
with ``<`` between name parts. The rules implemented here:

* letters with diacritics lose them (``ễ → E``, ``ư → U``, ``Č → C``), including every
  Vietnamese letter with tone marks, because Unicode decomposes them into base letter + marks;
* letters the ICAO table maps to something else: ``Đ/đ → D`` (Vietnamese, Croatian — Unicode does
  not decompose it), ``Ä → AE``, ``Ö/Ø/Œ → OE``, ``Ü → UE``, ``Å → AA``, ``Æ → AE``, ``ß → SS``,
  ``Þ → TH``, ``Ð → D``, ``Ł → L``, ``Ħ → H``, ``ı → I``, ``Ĳ → IJ``, ``Ŋ → N``, ``Ŧ → T``;
* spaces, hyphens and commas become the filler ``<``; apostrophes and full stops are dropped
  (``d'Červenková → DCERVENKOVA``, PAYLOAD.md example); runs of fillers collapse to one and
  leading/trailing fillers go, so ``"Smith - Jones"`` gives ``SMITH<JONES``.

Other scripts (Cyrillic, Greek, Arabic, CJK) and digits are not covered: ``transliterate`` raises
``ValueError`` for them and validation reports ``transliteration_unsupported`` (deriving) or the
warning ``transliteration_unchecked`` (an issuer-supplied fnt/gnt is kept unchecked).

Speed: the mapping is one precomputed ``str.translate`` table built at import (validation is on
the hot path), not a per-character loop.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

#: Letters whose ICAO 9303 form is not "the base letter without its marks" (upper case keys).
_SPECIAL: Final[dict[str, str]] = {
    "Ä": "AE",
    "Å": "AA",
    "Æ": "AE",
    "Ö": "OE",
    "Ø": "OE",
    "Œ": "OE",
    "Ü": "UE",
    "Þ": "TH",
    "Ð": "D",
    "Đ": "D",
    "Ħ": "H",
    "Ł": "L",
    "Ŀ": "L",
    "Ĳ": "IJ",
    "Ŋ": "N",
    "Ŧ": "T",
}
#: Separators between name parts → filler (ICAO 9303 Part 3: spaces, hyphens, commas); the
#: filler itself stays, so transliterating an ICAO form gives it back unchanged.
_FILLERS: Final = "< \t\u00a0,-\u2010\u2011\u2012\u2013\u2014\u2212"
#: Punctuation ICAO says to omit: apostrophes (all common look-alikes) and full stops.
_OMITTED: Final = "'\u2018\u2019\u02bc\u02b9\u0060\u00b4."
_ASCII_UPPER: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Stands in for an uncovered ASCII character (digit, symbol) so that "the output is ASCII" means
#: "every character was covered" — one C-level ``isascii()`` instead of a regex.
_UNCOVERED: Final = "\ufffd"


def _icao_form(ch: str) -> str | None:
    """The ICAO form of one character, or ``None`` when the table does not cover it."""
    out = []
    for up in ch.upper():  # "ß".upper() == "SS"; "ŉ".upper() == "ʼN"
        if up in _SPECIAL:
            out.append(_SPECIAL[up])
            continue
        if up in _OMITTED:
            continue
        base = "".join(c for c in unicodedata.normalize("NFD", up) if not unicodedata.combining(c))
        if len(base) != 1 or base not in _ASCII_UPPER:
            return None
        out.append(base)
    return "".join(out)


def _build_table() -> dict[int, str | None]:
    table: dict[int, str | None] = dict.fromkeys(range(0x80), _UNCOVERED)
    # Basic Latin letters, Latin-1 Supplement, Latin Extended-A/-B, Latin Extended Additional
    # (U+1E00–U+1EFF holds the precomposed Vietnamese letters with tone marks: ạ ả ấ ầ ẩ ẫ ậ ắ …).
    ranges = (range(0x41, 0x5B), range(0x61, 0x7B), range(0xC0, 0x250), range(0x1E00, 0x1F00))
    for block in ranges:
        for cp in block:
            form = _icao_form(chr(cp))
            if form is not None:
                table[cp] = form
    for cp in range(0x300, 0x370):  # combining marks left after NFC (no precomposed form)
        table[cp] = None
    for ch in _FILLERS:
        table[ord(ch)] = "<"
    for ch in _OMITTED:
        table[ord(ch)] = None
    return table


_TABLE: Final = _build_table()
_FILLER_RUNS: Final = re.compile(r"<{2,}")


def icao_or_none(name: str) -> str | None:
    """ICAO 9303 form of an NFC-normalised ``name``; ``None`` if it has uncovered characters."""
    out = name.translate(_TABLE)
    if not out.isascii():  # an uncovered character survived, or became _UNCOVERED
        return None
    if "<<" in out:
        out = _FILLER_RUNS.sub("<", out)
    if out.startswith("<") or out.endswith("<"):
        out = out.strip("<")
    return out


def transliterate(name: str) -> str:
    """ICAO 9303 machine-readable form of a Latin-script name.

    ``transliterate("Nguyễn Thị Đào") == "NGUYEN<THI<DAO"``. Raises ``ValueError`` naming the
    first character outside the ICAO Latin table (other scripts, digits, symbols).
    """
    nfc = unicodedata.normalize("NFC", name)
    out = icao_or_none(nfc)
    if out is None:
        bad = next(ch for ch in nfc if icao_or_none(ch) is None)
        raise ValueError(f"cannot transliterate {bad!r} (U+{ord(bad):04X}) in {name!r}")
    return out


def first_unsupported(name: str) -> str:
    """The first character of ``name`` that ``icao_or_none`` does not cover (for messages)."""
    return next((ch for ch in name if icao_or_none(ch) is None), "?")
