"""SoftHSM for development and tests: locate the module, lay out a token directory, init a token.

Production uses the vendor's PKCS#11 module and a token set up by the security officers; nothing
here runs there. ``SOFTHSM2_CONF`` must be set before the module is loaded in a process.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
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
