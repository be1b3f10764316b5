"""Checkpoints: a chain's head signed by the audit key in the HSM, and kept in the token too.

The hash chain alone shows an edit only to someone who did not recompute the hashes after it. A
checkpoint binds (chain, sequence number, head hash, time) under the audit key, a P-256 key
generated in the token and never extractable: whoever rewrites the database without the HSM
cannot sign the new heads. The signing worker also keeps the latest checkpoint of each chain in
a CKO_DATA object of the token and never moves it backwards, so a ledger cut short or restored
from an older copy is found: it ends before the token's head, or holds another hash there.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

#: The CKO_DATA application of the token's copy of each chain's latest checkpoint.
HEAD_APPLICATION: Final = "hcert-ledger-head"
_DOMAIN: Final = b"hcert-signer ledger checkpoint v1\x00"
_NUMBERS = struct.Struct(">QQ")  # seq, time_us


class Head(NamedTuple):
    """Where a chain stood at a checkpoint."""

    chain: str
    seq: int  # 0 for a chain without records
    hash: bytes  # the record's chain hash (GENESIS for seq 0)
    time_us: int


class Checkpoint(NamedTuple):
    head: Head
    key: bytes  # SHA-256 of the audit key's SubjectPublicKeyInfo
    signature: bytes  # ECDSA P-256 over SHA-256(message(head)), raw r‖s


def message(head: Head) -> bytes:
    """The bytes the audit key signs (as their SHA-256)."""
    chain = head.chain.encode()
    return (
        _DOMAIN
        + struct.pack(">H", len(chain))
        + chain
        + _NUMBERS.pack(head.seq, head.time_us)
        + head.hash
    )


def pack_head(head: Head) -> bytes:
    """The value of the token's data object (its label is the chain)."""
    return _NUMBERS.pack(head.seq, head.time_us) + head.hash


def unpack_head(chain: str, value: bytes) -> Head:
    seq, time_us = _NUMBERS.unpack_from(value)
    return Head(chain, seq, value[_NUMBERS.size :], time_us)


def key_id(public_der: bytes) -> bytes:
    return hashlib.sha256(public_der).digest()


def signed_by(checkpoint: Checkpoint, public_der: bytes) -> bool:
    """Whether the checkpoint's signature verifies under this audit public key."""
    if key_id(public_der) != checkpoint.key or len(checkpoint.signature) != 64:
        return False
    public = load_der_public_key(public_der)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    r, s = checkpoint.signature[:32], checkpoint.signature[32:]
    der = encode_dss_signature(int.from_bytes(r), int.from_bytes(s))
    try:
        public.verify(der, message(checkpoint.head), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# -- the front ⇄ worker messages ------------------------------------------------------------------
# "LedgerHead": body = chain; reply = the token's stored head value, b"" when it has none.
# "Checkpoint": body = the new head + the stored value the front expects to replace (b"" for
# none); reply = b"\x00" + public key DER length, DER and signature when signed, or b"\x01" + the
# value actually stored when the token's head is not the expected one (nothing written).


def pack_request(head: Head, expected: bytes) -> bytes:
    chain = head.chain.encode()
    return struct.pack(">H", len(chain)) + chain + pack_head(head) + expected


def unpack_request(body: bytes) -> tuple[Head, bytes]:
    (length,) = struct.unpack_from(">H", body)
    chain = body[2 : 2 + length].decode()
    rest = body[2 + length :]
    size = _NUMBERS.size + 32
    return unpack_head(chain, rest[:size]), rest[size:]


def signed_reply(public_der: bytes, signature: bytes) -> bytes:
    return b"\x00" + struct.pack(">H", len(public_der)) + public_der + signature


def moved_reply(stored: bytes) -> bytes:
    return b"\x01" + stored


def unpack_reply(reply: bytes) -> tuple[bytes, bytes] | bytes:
    """(public key DER, signature) when signed, else the token's stored head value."""
    if reply[:1] == b"\x01":
        return reply[1:]
    (length,) = struct.unpack_from(">H", reply, 1)
    return reply[3 : 3 + length], reply[3 + length :]
