"""``signer verify``: check HC1 strings locally against DSC PEMs and/or a server's trust list.

Every line gets its own JSON answer, whatever it holds: a line that is not UTF-8, not an HC1
string or a hostile certificate is a failed line, never a traceback (issue 10 §2).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cryptography import x509

from signer.client import ClientTls, fetch_trust_list, hc1_lines
from signer.domain import Alg
from signer.errors import ConfigError, RequestError
from signer.hcert.verify import TrustedDsc, TrustStore, Verification, verify_hc1


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 instant; a value without a zone is taken as UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise RequestError(
            f"--at {text!r} is not an ISO 8601 instant (e.g. 2027-01-31T12:00Z)"
        ) from e
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def build_trust(
    trust_dir: Path | None, server: str | None, *, tls: ClientTls | None = None
) -> TrustStore:
    """The DSCs in ``trust_dir`` plus those of ``server`` (dialled with ``tls``)."""
    dscs: list[TrustedDsc] = []
    if trust_dir is not None:
        dscs.extend(TrustStore.load_pem_dir(trust_dir))
    if server is not None:
        dscs.extend(
            TrustedDsc.from_certificate(x509.load_der_x509_certificate(e.certificate_der))
            for e in fetch_trust_list(server, tls=tls)
        )
    if not dscs:
        raise ConfigError("no trusted DSCs: give --trust-dir DIR and/or --server ADDR")
    return TrustStore(dscs)


def verify_file(
    path: Path | None, trust: TrustStore, at: dt.datetime, out: IO[str], *, schema: bool = False
) -> int:
    """Verify each line; returns the number of lines that failed."""
    source = sys.stdin.buffer if path is None else path.open("rb")
    failed = 0
    try:
        for number, text in hc1_lines(_text_lines(source)):
            verdict = verify_hc1(text, trust, at=at, schema=schema)
            failed += not verdict.ok
            out.write(json.dumps(verdict_json(number, verdict), ensure_ascii=False) + "\n")
    finally:
        if path is not None:
            source.close()
    return failed


def _text_lines(source: IO[bytes]) -> Iterator[str]:
    """Lines as text; bytes that are not UTF-8 become U+FFFD, which no HC1 string contains, so
    such a line fails on its own (``base45``) instead of ending the run."""
    yield from io.TextIOWrapper(source, encoding="utf-8", errors="replace", newline="")


def verdict_json(line: int, verdict: Verification) -> dict[str, object]:
    """The JSON line for one verdict; every value is plain JSON (the decoder saw to it)."""
    result: dict[str, object] = {"line": line, "valid": verdict.ok}
    if not verdict.ok:
        result["reason"] = verdict.reason
    result["message"] = verdict.message
    if verdict.warnings:
        result["warnings"] = [w.code for w in verdict.warnings]
    decoded = verdict.decoded
    if decoded is not None:
        alg = Alg.from_cose_id(decoded.alg_id)
        result.update(
            {
                "kid": base64.b64encode(decoded.kid).decode() if decoded.kid else None,
                "alg": alg.value if alg else decoded.alg_id,
                "iss": decoded.iss,
                "iat": decoded.iat,
                "exp": decoded.exp,
                "payload": decoded.dcc,
            }
        )
    if verdict.dsc is not None:
        result["dsc"] = verdict.dsc.certificate.subject.rfc4514_string()
    return result
