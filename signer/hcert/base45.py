"""Base45 (RFC 9285), table-driven.

The PyPI ``base45`` package spends ~45 µs on a 400-byte certificate, as much as the HSM signature
itself (PERFORMANCE.md). Looking up each byte pair in a precomputed 65 536-entry table costs
~12 µs per certificate in pure Python; :func:`encode_many` does the lookups of a whole batch in
one numpy gather, ~3 µs per certificate (docs/adr/0004-hot-path-encoding.md). Tests compare all
encoders with the ``base45`` package on random data.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

# Two bytes n = 256*a + b become c, d, e with n = c + 45*d + 45²*e (HCERT.md §6).
_PAIRS: tuple[str, ...] = tuple(
    ALPHABET[n % 45] + ALPHABET[(n // 45) % 45] + ALPHABET[n // 2025] for n in range(65536)
)
# A trailing single byte becomes two characters.
_SINGLES: tuple[str, ...] = tuple(ALPHABET[n % 45] + ALPHABET[n // 45] for n in range(256))
_VALUES: dict[str, int] = {ch: i for i, ch in enumerate(ALPHABET)}
_UNPACKERS: dict[int, struct.Struct] = {}


class Base45Error(ValueError):
    """The text is not valid base45."""


def encode(data: bytes) -> str:
    pairs = len(data) >> 1
    unpacker = _UNPACKERS.get(pairs)
    if unpacker is None:
        unpacker = _UNPACKERS.setdefault(pairs, struct.Struct(f">{pairs}H"))
    text = "".join(map(_PAIRS.__getitem__, unpacker.unpack_from(data)))
    if len(data) & 1:
        text += _SINGLES[data[-1]]
    return text


# The same table as a (65536, 3) array of ASCII codes, for numpy's gather.
_PAIRS_ARRAY = np.frombuffer("".join(_PAIRS).encode("ascii"), dtype=np.uint8).reshape(65536, 3)


def encode_many(blobs: Sequence[bytes], prefix: str = "") -> list[str]:
    """``[prefix + encode(b) for b in blobs]``, with one table gather for the whole batch."""
    pairs = np.frombuffer(b"".join(b[: len(b) & ~1] for b in blobs), dtype=">u2")
    text = _PAIRS_ARRAY[pairs].tobytes().decode("ascii")
    out: list[str] = []
    position = 0
    for blob in blobs:
        end = position + (len(blob) >> 1) * 3
        encoded = prefix + text[position:end]
        if len(blob) & 1:
            encoded += _SINGLES[blob[-1]]
        out.append(encoded)
        position = end
    return out


def decode(text: str) -> bytes:
    """Decode base45; raises :class:`Base45Error` on a foreign character or an impossible group."""
    try:
        values = [_VALUES[ch] for ch in text]
    except KeyError as e:
        raise Base45Error(f"character {e.args[0]!r} is not in the base45 alphabet") from None
    full, rest = divmod(len(values), 3)
    if rest == 1:
        raise Base45Error("length leaves a single dangling character")
    out = bytearray()
    for i in range(0, full * 3, 3):
        n = values[i] + 45 * values[i + 1] + 2025 * values[i + 2]
        if n > 0xFFFF:
            raise Base45Error(f"group at {i} encodes {n}, more than two bytes")
        out += n.to_bytes(2, "big")
    if rest == 2:
        n = values[-2] + 45 * values[-1]
        if n > 0xFF:
            raise Base45Error("final group encodes more than one byte")
        out.append(n)
    return bytes(out)
