"""trust-list file names from labels a hostile server may send (issue 9 §8): every name stays
inside the directory, whatever the label; links planted there are refused, not followed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from signer.api.v1 import signer_pb2 as pb
from signer.errors import ConfigError
from signer.keys.devca import DevCsca
from signer.trust_files import trust_file_name, write_trust_list

KID = bytes.fromhex("00ff10a0b1c2d3e4")


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("dsc-2025-h2", "dsc-2025-h2-00ff10a0b1c2d3e4.pem"),
        ("../../x", "_.._x-00ff10a0b1c2d3e4.pem"),
        ("/etc/cron.d/x", "_etc_cron.d_x-00ff10a0b1c2d3e4.pem"),
        ("..", "dsc-00ff10a0b1c2d3e4.pem"),
        ("", "dsc-00ff10a0b1c2d3e4.pem"),
        (".hidden", "hidden-00ff10a0b1c2d3e4.pem"),
        ("a\0b\nc", "a_b_c-00ff10a0b1c2d3e4.pem"),
        ("Đức ключ", "_c_-00ff10a0b1c2d3e4.pem"),
        ("x" * 300, "x" * 64 + "-00ff10a0b1c2d3e4.pem"),
    ],
)
def test_labels_become_safe_names(label: str, name: str) -> None:
    assert trust_file_name(label, KID) == name


@given(st.text(max_size=200), st.binary(min_size=8, max_size=8))
def test_no_label_names_a_path_outside_the_directory(label: str, kid: bytes) -> None:
    name = trust_file_name(label, kid)
    directory = Path("/srv/trust")
    assert (directory / name).parent == directory
    assert "/" not in name and "\0" not in name and not name.startswith(".")
    assert name.endswith(f"-{kid.hex()}.pem") and len(name.encode()) < 255


def _entry(label: str, certificate: x509.Certificate) -> pb.TrustListEntry:
    der = certificate.public_bytes(serialization.Encoding.DER)
    return pb.TrustListEntry(label=label, kid=hashlib.sha256(der).digest()[:8], certificate_der=der)


def test_hostile_labels_write_only_inside_the_directory(tmp_path: Path, dev_csca: DevCsca) -> None:
    trust = tmp_path / "a" / "trust"
    labels = ["../../x", "../escape", "/abs", "..", "dsc", "dsc"]  # the last two clash
    written = write_trust_list([_entry(label, dev_csca.certificate) for label in labels], trust)

    assert len(written) == len(labels) == len(set(written))
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        p.name for p in written
    )
    assert all(p.parent == trust for p in written)
    for path in written:
        assert x509.load_pem_x509_certificate(path.read_bytes()) == dev_csca.certificate


def test_a_link_in_the_directory_is_refused_and_its_target_kept(
    tmp_path: Path, dev_csca: DevCsca
) -> None:
    trust, target = tmp_path / "trust", tmp_path / "target"
    trust.mkdir()
    target.write_text("keep me")
    entry = _entry("dsc", dev_csca.certificate)
    (trust / trust_file_name("dsc", entry.kid)).symlink_to(target)

    with pytest.raises(ConfigError, match="is a symbolic link"):
        write_trust_list([entry], trust)
    assert target.read_text() == "keep me"
    assert [p.name for p in trust.iterdir()] == [trust_file_name("dsc", entry.kid)]


def test_a_file_in_place_is_replaced(tmp_path: Path, dev_csca: DevCsca) -> None:
    entry = _entry("dsc", dev_csca.certificate)
    (tmp_path / trust_file_name("dsc", entry.kid)).write_text("old")
    (path,) = write_trust_list([entry], tmp_path)
    assert path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
