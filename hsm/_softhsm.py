"""SoftHSM for development and tests: locate the module, lay out a token directory, init a token.

Production uses the vendor's PKCS#11 module and a token set up by the security officers; nothing
here runs there. ``SOFTHSM2_CONF`` must be set before the module is loaded in a process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hsm._errors import HsmError

_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


def find_softhsm_module() -> str | None:
    """Path of libsofthsm2.so, or None when SoftHSM is not installed."""
    for candidate in _MODULE_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    return None


#: Where SoftHSM reads its configuration when ``SOFTHSM2_CONF`` is not set (Debian's build).
DEFAULT_CONF = "/etc/softhsm/softhsm2.conf"


def is_softhsm(module_path: str) -> bool:
    return os.path.basename(module_path).startswith("libsofthsm2")


def softhsm_token_dir(environ: dict[str, str] | None = None) -> Path | None:
    """The token directory the SoftHSM library of this process uses (``directories.tokendir``
    of the file ``SOFTHSM2_CONF`` names), or None when it cannot be read."""
    conf = (os.environ if environ is None else environ).get("SOFTHSM2_CONF", DEFAULT_CONF)
    try:
        text = Path(conf).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "directories.tokendir" and value.strip():
            return Path(value.strip())
    return None


def softhsm_store_of(module_path: str) -> Path | None:
    """The token directory to lock for ``module_path``: SoftHSM's, as the library will read it
    at C_Initialize (call before loading it); None for every other module."""
    return softhsm_token_dir() if is_softhsm(module_path) else None


@contextlib.contextmanager
def token_store_lock(directory: Path | None, *, exclusive: bool) -> Iterator[None]:
    """Hold SoftHSM's token store while this process reads or writes ``token.object``.

    SoftHSM 2.6.1 rewrites ``token.object`` on every C_Login (``Token::loginUser`` stores the
    PIN-count-low flag whatever it was), and its writer lets readers in too early: it truncates
    the file under an fcntl lock, writes through a stdio buffer and releases the lock before
    ``fclose`` flushes that buffer (``ObjectFile::writeAttributes``, ``File::~File``). A
    process that initialises the library, lists tokens (C_GetTokenInfo) or logs in during that
    window reads an empty or cut file, marks its token object invalid and keeps answering
    CKR_GENERAL_ERROR ("cannot list tokens") or CKR_TOKEN_NOT_PRESENT until it finalises the
    library: the flaky worker start of issue 9 §12, one worker logging in while another one
    started. Every process of ours takes an flock on the token directory (``directory``, from
    :func:`softhsm_store_of`) around those calls: shared to read, exclusive to log in. With
    None (a vendor HSM, p11-kit) nothing is locked.
    """
    if directory is None:
        yield
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield  # no store there: the library will say so in its own words
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def init_token_command(util: str, label: str) -> list[str]:
    """The softhsm2-util command line that initialises token ``label``: no PIN on it."""
    return [util, "--init-token", "--free", "--label", label]


@dataclass(frozen=True, slots=True)
class SoftHsm:
    """A SoftHSM installation rooted in ``directory`` (its config file and token store)."""

    directory: Path

    @property
    def conf_path(self) -> Path:
        return self.directory / "softhsm2.conf"

    def ensure_layout(self) -> None:
        tokens = self.directory / "tokens"
        tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.conf_path.exists():
            self.conf_path.write_text(
                f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
            )

    def activate(self) -> None:
        """Point this process (and the processes it starts) at this installation."""
        os.environ["SOFTHSM2_CONF"] = str(self.conf_path)

    def has_token(self, label: str) -> bool:
        labels = {
            line.split(":", 1)[1].strip()
            for line in self._show_slots().splitlines()
            if line.strip().startswith("Label:")
        }
        return label in labels

    def init_token(self, label: str, user_pin: str, so_pin: str) -> None:
        """Initialise a free slot as token ``label``. The PINs are typed into softhsm2-util's
        prompts through a pseudo-terminal (it reads them only from a terminal), never passed as
        arguments: a command line is visible to every user in ``ps`` (issue 7 §6)."""
        util = shutil.which("softhsm2-util")
        if util is None:
            raise HsmError("softhsm2-util not found: install softhsm2 (apt-get install softhsm2)")
        controller, terminal = pty.openpty()
        try:
            process = subprocess.Popen(
                init_token_command(util, label),
                stdin=terminal,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "SOFTHSM2_CONF": str(self.conf_path)},
            )
            os.close(terminal)
            terminal = -1
            # The prompts ask for the SO PIN twice, then the user PIN twice.
            os.write(controller, f"{so_pin}\n{so_pin}\n{user_pin}\n{user_pin}\n".encode())
            output, _ = process.communicate(timeout=60)
        finally:
            os.close(controller)
            if terminal >= 0:
                os.close(terminal)
        if process.returncode != 0:
            text = output.decode(errors="replace").strip().splitlines()
            raise HsmError(f"softhsm2-util --init-token failed: {text[-1] if text else '?'}")

    def _show_slots(self) -> str:
        util = shutil.which("softhsm2-util")
        if util is None:
            raise HsmError("softhsm2-util not found: install softhsm2 (apt-get install softhsm2)")
        result = subprocess.run(
            [util, "--show-slots"],
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf_path)},
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout
