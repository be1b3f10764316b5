"""Client side of the CLI: stream a JSONL file through SignStream, fetch the trust list.

Every command dials through :func:`channel`: plaintext, or TLS (and mutual TLS with a client
certificate) when given a :class:`ClientTls`.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer.api.v1 import signer_pb2 as pb
from signer.api.v1 import signer_pb2_grpc as pb_grpc
from signer.cli_files import open_input
from signer.domain import ItemError
from signer.errors import BackendError, ConfigError, RequestError
from signer.jsonl import not_utf8, records, stdin_text
from signer.progress import Progress
from signer.resume import NOTHING_ANSWERED, Answered

_ALGS = {"": pb.ALGORITHM_UNSPECIFIED, "ES256": pb.ALGORITHM_ES256, "PS256": pb.ALGORITHM_PS256}
_ALG_NAMES = {pb.ALGORITHM_ES256: "ES256", pb.ALGORITHM_PS256: "PS256"}
_MAX_MESSAGE = 64 << 20
#: SignStream batches sent and not yet written out; the server works on 2 at a time
#: (``[server] stream_window``), so 2 keep it busy. A killed run has at most this many batches
#: signed but not in its output: what ``--resume`` signs a second time.
WINDOW = 2


@dataclass(frozen=True)
class ClientTls:
    """A client's TLS files (``--ca``, ``--cert``, ``--key``): the CA that signed the server's
    certificate, and for mutual TLS the client's own certificate and key."""

    ca: Path | None
    cert: Path | None = None
    key: Path | None = None
    #: the name to expect in the server's certificate when the dialled address is not it
    server_name: str | None = None

    @classmethod
    def from_options(cls, ca: Path | None, cert: Path | None, key: Path | None) -> ClientTls | None:
        """The options as given on the command line; None (plaintext) when none is given."""
        if ca is None and cert is None and key is None:
            return None
        if (cert is None) != (key is None):
            raise ConfigError("--cert and --key go together: the client certificate and its key")
        if ca is None:
            raise ConfigError(
                "--cert/--key need --ca: the CA file that signed the server's certificate"
            )
        return cls(ca, cert, key)

    def credentials(self) -> grpc.ChannelCredentials:
        """grpc channel credentials; ConfigError naming the option and file when one cannot be
        read or the certificate is not the key's (grpc would only fail the handshake)."""
        ca = _read_option("--ca", self.ca) if self.ca else None
        if (self.cert is None) != (self.key is None):
            raise ConfigError("--cert and --key go together: the client certificate and its key")
        if self.cert is None or self.key is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        cert_pem, key_pem = _read_option("--cert", self.cert), _read_option("--key", self.key)
        try:
            certificate = x509.load_pem_x509_certificates(cert_pem)[0]
        except ValueError as e:
            raise ConfigError(f"--cert {self.cert} is not a PEM certificate") from e
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"--key {self.key} is not an unencrypted PEM private key") from e
        if key.public_key() != certificate.public_key():
            raise ConfigError(f"--key {self.key} is not the private key of --cert {self.cert}")
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key_pem, certificate_chain=cert_pem
        )


def _read_option(option: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{option} {path}: cannot read it: {e.strerror}") from e


def parse_server_address(text: str) -> str:
    """``host:port`` or ``[v6]:port`` as grpc dials it; ConfigError without a port (grpc would
    silently dial 443)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or host.endswith(":") or (":" in host and not host.startswith("[")):
        raise ConfigError(
            f"server address {text!r} has no port: write HOST:PORT, e.g. 127.0.0.1:50051 "
            "or [::1]:50051"
        )
    if host.startswith("[") != host.endswith("]") or host == "[]":
        raise ConfigError(f"server address {text!r}: an IPv6 host goes in brackets, [::1]:50051")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"server address {text!r}: the port must be a number 1..65535")
    return f"{host}:{int(port)}"


def check_dial(address: str, tls: ClientTls | None) -> None:
    """ConfigError now for what :func:`channel` would refuse: an address without a port, TLS
    files that cannot be read; so a command fails before it touches its output."""
    parse_server_address(address)
    if tls is not None:
        tls.credentials()


def channel(address: str, tls: ClientTls | None = None) -> grpc.Channel:
    """A channel to ``address`` (``host:port``): TLS with ``tls``, plaintext without."""
    target = parse_server_address(address)
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ("grpc.max_send_message_length", _MAX_MESSAGE),
    ]
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(target, tls.credentials(), options=options)


@dataclass
class SignTally:
    signed: int = 0
    rejected: int = 0

    @property
    def done(self) -> int:
        return self.signed + self.rejected

    def detail(self) -> str:
        return f"{self.signed:,} signed, {self.rejected:,} rejected"


@dataclass(frozen=True)
class QrFiles:
    """Write each signed certificate's QR code into ``directory`` as ``<line>.png`` / ``.svg``."""

    directory: Path
    png: bool = True
    svg: bool = False

    def options(self) -> pb.OutputOptions:
        return pb.OutputOptions(qr_png=self.png, qr_svg=self.svg)

    def save(self, line: int, signed: pb.Signed) -> dict[str, str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        written = {}
        if self.png:
            path = self.directory / f"{line}.png"
            path.write_bytes(signed.qr_png)
            written["qr_png"] = str(path)
        if self.svg:
            path = self.directory / f"{line}.svg"
            path.write_text(signed.qr_svg, encoding="utf-8")
            written["qr_svg"] = str(path)
        return written


class _Lines(NamedTuple):
    """The input lines of one request, with the results of those that cannot be sent."""

    numbers: list[int]  # every line, in order
    local: dict[int, pb.ItemResult]  # line → its result, given here (the line is not UTF-8)


def _rejected_here(number: int, error: ItemError) -> pb.ItemResult:
    errors = [pb.ItemError(code=error.code, path=error.path, message=error.message)]
    return pb.ItemResult(id=str(number), rejected=pb.Rejected(errors=errors))


def _batches(
    chunks: Iterator[tuple[int, str]], size: int, alg: str, output: pb.OutputOptions | None
) -> Iterator[tuple[_Lines, pb.SignBatchRequest]]:
    while chunk := list(itertools.islice(chunks, size)):
        local: dict[int, pb.ItemResult] = {}
        items = []
        for number, text in chunk:
            if (error := not_utf8(number, text)) is not None:
                local[number] = _rejected_here(number, error)
            else:
                items.append(pb.SignItem(id=str(number), payload_json=text))
        request = pb.SignBatchRequest(items=items, alg=_ALGS[alg], output=output)
        yield _Lines([n for n, _ in chunk], local), request


class _Results:
    """Writes one JSON line per result, counts outcomes and shows progress on stderr."""

    def __init__(self, out: IO[str], progress: Progress, qr: QrFiles | None) -> None:
        self.tally = SignTally()
        self._out = out
        self._qr = qr
        self._progress = progress

    def write(self, lines: _Lines, results: Iterable[pb.ItemResult]) -> None:
        answers = iter(results)
        for number in lines.numbers:
            result = lines.local.get(number) or next(answers)
            line = _result_json(number, result)
            if result.HasField("signed"):
                self.tally.signed += 1
                if self._qr is not None:
                    line.update(self._qr.save(number, result.signed))
            else:
                self.tally.rejected += 1
            self._out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._out.flush()  # a stopped run keeps every batch it wrote (--resume)
        self._progress.update(self.tally.done, self.tally.detail())

    def finish(self) -> SignTally:
        self._progress.finish(self.tally.done, self.tally.detail())
        return self.tally


@contextlib.contextmanager
def _input(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield stdin_text()
    else:
        with open_input(path) as source:
            yield source


def sign_file(
    path: Path | None,
    address: str,
    out: IO[str],
    batch: int = 500,
    alg: str = "",
    progress: IO[str] | None = sys.stderr,
    qr: QrFiles | None = None,
    *,
    tls: ClientTls | None = None,
    answered: Answered = NOTHING_ANSWERED,
    total: int | None = None,
) -> SignTally:
    """Sign every non-blank line of ``path`` (None = stdin) that ``answered`` does not hold
    through SignStream; one JSON result line per input, in input order, flushed per batch. At
    most :data:`WINDOW` batches are unanswered at once. ``total``: the lines to send, for the
    progress on ``progress`` (:func:`lines_to_send`)."""
    results = _Results(out, Progress(progress, total=total), qr)
    pending: deque[_Lines] = deque()
    window = threading.Semaphore(WINDOW)
    finished = threading.Event()
    with _input(path) as source:
        numbered = answered.pending(records(source))

        def requests() -> Iterator[pb.SignBatchRequest]:
            for lines, request in _batches(numbered, batch, alg, qr.options() if qr else None):
                while not window.acquire(timeout=0.1):  # grpc's thread: give up when done
                    if finished.is_set():
                        return
                pending.append(lines)
                yield request

        try:
            with channel(address, tls) as ch:
                for response in pb_grpc.SignerStub(ch).SignStream(requests()):
                    results.write(pending.popleft(), response.results)
                    window.release()
        except grpc.RpcError as e:
            raise _rpc_error(e, address) from e
        finally:
            finished.set()
    return results.finish()


def lines_to_send(path: Path | None, answered: Answered = NOTHING_ANSWERED) -> int | None:
    """How many lines a run on ``path`` sends (non-blank lines ``answered`` does not hold), for
    the progress total: one extra pass over the file before the run. None for stdin or a file
    that cannot be read twice (a FIFO)."""
    if path is None or not path.is_file():
        return None
    with open_input(path) as source:
        return sum(1 for _ in answered.pending(records(source)))


def hc1_lines(source: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, HC1 text) for each non-blank line: a bare ``HC1:…`` string, or a JSON object
    with an ``hc1`` field (the output of ``signer sign``). Only CR/LF are stripped: base45 has a
    space in its alphabet (HCERT.md §6)."""
    for number, line in enumerate(source, start=1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        if text.lstrip().startswith("{"):
            try:
                value = json.loads(text).get("hc1", "")
            except (ValueError, AttributeError, RecursionError):  # RecursionError: deep nesting
                value = ""
            text = value if isinstance(value, str) else ""
        yield number, text


def reissue_file(
    path: Path | None,
    address: str,
    out: IO[str],
    batch: int = 500,
    alg: str = "",
    progress: IO[str] | None = sys.stderr,
    qr: QrFiles | None = None,
    *,
    tls: ClientTls | None = None,
    answered: Answered = NOTHING_ANSWERED,
    total: int | None = None,
) -> SignTally:
    """Re-issue every HC1 of ``path`` that ``answered`` does not hold through the Reissue RPC,
    one batch at a time; one JSON result line per input, flushed per batch."""
    results = _Results(out, Progress(progress, total=total), qr)
    with _input(path) as source:
        lines = answered.pending(hc1_lines(source))
        try:
            with channel(address, tls) as ch:
                stub = pb_grpc.SignerStub(ch)
                while chunk := list(itertools.islice(lines, batch)):
                    local = {
                        n: _rejected_here(n, error)
                        for n, text in chunk
                        if (error := not_utf8(n, text)) is not None
                    }
                    request = pb.ReissueRequest(
                        items=[
                            pb.ReissueItem(id=str(n), hc1=text)
                            for n, text in chunk
                            if n not in local
                        ],
                        alg=_ALGS[alg],
                        output=qr.options() if qr else None,
                    )
                    numbers = [n for n, _ in chunk]
                    results.write(_Lines(numbers, local), stub.Reissue(request).results)
        except grpc.RpcError as e:
            raise _rpc_error(e, address) from e
    return results.finish()


def _result_json(line: int, result: pb.ItemResult) -> dict[str, object]:
    if result.HasField("signed"):
        s = result.signed
        return {
            "line": line,
            "id": result.id,
            "hc1": s.hc1,
            "kid": base64.b64encode(s.kid).decode(),
            "alg": _ALG_NAMES.get(s.alg, "?"),
            "iat": s.iat,
            "exp": s.exp,
        }
    return {
        "line": line,
        "id": result.id,
        "errors": [
            {"code": e.code, "path": e.path, "message": e.message} for e in result.rejected.errors
        ],
    }


def fetch_trust_list(address: str, *, tls: ClientTls | None = None) -> list[pb.TrustListEntry]:
    try:
        with channel(address, tls) as ch:
            return list(pb_grpc.SignerStub(ch).GetTrustList(pb.GetTrustListRequest()).entries)
    except grpc.RpcError as e:
        raise _rpc_error(e, address) from e


def _rpc_error(error: grpc.RpcError, address: str) -> Exception:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return RequestError(f"the server refused the request: {details}")
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendError(f"the signer at {address} is unavailable: {details}")
    return BackendError(f"RPC to {address} failed ({code.name if code else '?'}): {details}")
