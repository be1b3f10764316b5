"""CKA_ALLOWED_MECHANISMS, the array attribute python-pkcs11 0.10 cannot pack.

PKCS#11 v2.40 §4.4 / §4.6: ``CKA_ALLOWED_MECHANISMS`` is a ``CK_MECHANISM_TYPE[]``, an array of
native-endian ``CK_ULONG`` values; a key that has one can be used with those mechanisms only.
python-pkcs11 maps attributes to (pack, unpack) pairs in an :class:`AttributeMapper`
(``pkcs11/attributes.py``) and has none for this one, so :func:`attribute_mapper` registers a
pair of our own the way the library registers its own types; every session of
:class:`~hsm.HsmToken` is opened with it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pkcs11 import Attribute, Mechanism
from pkcs11.attributes import AttributeMapper

_ULONG = struct.Struct("L")  # CK_ULONG as this platform's C compiler lays it out (pkcs11 too)


def pack_mechanisms(mechanisms: Iterable[int]) -> bytes:
    """``CK_MECHANISM_TYPE[]``: one native CK_ULONG per mechanism."""
    return b"".join(_ULONG.pack(int(m)) for m in mechanisms)


def unpack_mechanisms(raw: bytes) -> frozenset[int]:
    """The mechanisms of a ``CK_MECHANISM_TYPE[]`` value; known ones as :class:`Mechanism`
    (their names read well in a message), vendor-defined ones as plain ints."""
    if len(raw) % _ULONG.size:
        raise ValueError(
            f"CKA_ALLOWED_MECHANISMS is {len(raw)} bytes, not a whole number of CK_ULONGs"
        )
    values = (value for (value,) in _ULONG.iter_unpack(raw))
    return frozenset(_named(v) for v in values)


def mechanism_names(mechanisms: Iterable[int]) -> str:
    """``CKM_ECDSA, CKM_RSA_PKCS`` (sorted), or ``nothing``."""
    names = sorted(
        f"CKM_{m.name}" if isinstance(m, Mechanism) else f"0x{m:x}"
        for m in (_named(int(v)) for v in mechanisms)
    )
    return ", ".join(names) or "nothing"


def attribute_mapper() -> AttributeMapper:
    """python-pkcs11's attribute mapper, plus CKA_ALLOWED_MECHANISMS."""
    mapper = AttributeMapper()
    mapper.register_handler(Attribute.ALLOWED_MECHANISMS, pack_mechanisms, unpack_mechanisms)
    return mapper


def _named(value: int) -> int:
    try:
        return Mechanism(value)
    except ValueError:
        return value
