"""Framing between the front process and a worker: length-prefixed pickled tuples over a unix
socket pair that only these two processes hold (the front creates it and passes one end to the
worker it starts), so nothing outside the appliance can write to it.

Front → worker: ``(chunk_id, kind, body, types)``; ``("stop",)``.
Worker → front: ``("status", serving, trust_list_bytes)``, ``("done", chunk_id, response_bytes,
uvcis, issued)`` (``issued``: what the ledger records of each signed item), ``("error",
chunk_id, error_kind, message)``, ``("failed", message)``.
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

HEADER = struct.Struct("!I")
MAX_FRAME = 256 << 20


def encode(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> tuple[Any, ...]:
    message = pickle.loads(body)  # noqa: S301 - a socket pair only the appliance holds
    assert isinstance(message, tuple)
    return message


def send(sock: socket.socket, message: tuple[Any, ...]) -> None:
    """Blocking send (the worker side)."""
    sock.sendall(encode(message))


def receive(sock: socket.socket) -> tuple[Any, ...] | None:
    """Blocking receive (the worker side); None when the front closed the socket."""
    header = _exactly(sock, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is over the limit")
    body = _exactly(sock, length)
    return None if body is None else decode(body)


def _exactly(sock: socket.socket, count: int) -> bytes | None:
    parts = []
    while count:
        part = sock.recv(min(count, 1 << 20))
        if not part:
            return None
        parts.append(part)
        count -= len(part)
    return b"".join(parts)
