"""``signer trust-list``'s PEM files: names made safe, written only inside the directory.

A label comes from the server, so it is untrusted (issue 9 §8): ``../../x``, ``/etc/cron.d/x``
or a symbolic link planted in the directory must not make the CLI write elsewhere. A file name
is the label cut to a safe character set plus the kid in hex (always safe), and each file is
written to a fresh temporary name and renamed into place, which never follows a link.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer.api.v1 import signer_pb2 as pb
from signer.cli_files import make_directory
from signer.errors import ConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_LABEL_MAX = 64


def trust_file_name(label: str, kid: bytes) -> str:
    """``<label>-<kid hex>.pem``, the label reduced to ``A-Z a-z 0-9 _ . -`` (any other run of
    characters becomes ``_``), without leading dots and at most 64 characters; ``dsc`` when
    nothing is left. The result never holds a path separator and never starts with a dot."""
    safe = _UNSAFE.sub("_", label).lstrip(".")[:_LABEL_MAX] or "dsc"
    return f"{safe}-{kid.hex()}.pem"


def write_trust_list(entries: Iterable[pb.TrustListEntry], directory: Path) -> list[Path]:
    """One PEM file per DSC in ``directory`` (created when missing); a name given twice gets
    ``-2``, ``-3``, …; a symbolic link where a file should go is refused, not followed."""
    make_directory(directory, "--out")
    written: list[Path] = []
    taken: set[str] = set()
    for entry in entries:
        certificate = x509.load_der_x509_certificate(entry.certificate_der)
        name = _unique(trust_file_name(entry.label, entry.kid), taken)
        path = directory / name
        _write_inside(directory, name, certificate.public_bytes(serialization.Encoding.PEM))
        written.append(path)
    return written


def _unique(name: str, taken: set[str]) -> str:
    stem, n, candidate = name.removesuffix(".pem"), 1, name
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}.pem"
    taken.add(candidate)
    return candidate


def _write_inside(directory: Path, name: str, data: bytes) -> None:
    """Write ``data`` as ``directory/name``: through a directory descriptor, to a new temporary
    file (O_EXCL, O_NOFOLLOW), renamed over ``name``; refused when ``name`` is a link."""
    if "/" in name or name.startswith("."):
        raise AssertionError(f"unsafe trust-list file name {name!r}")  # trust_file_name's promise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise ConfigError(
                    f"--out {directory}: {name} is a symbolic link; not writing through it "
                    "(remove it, or choose an empty directory)"
                )
        except FileNotFoundError:
            pass
        temporary = f".{name}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(temporary, flags, 0o644, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            os.unlink(temporary, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)
