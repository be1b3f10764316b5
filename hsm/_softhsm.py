"""SoftHSM for development and tests: locate the module, lay out a token directory, init a token.

Production uses the vendor's PKCS#11 module and a token set up by the security officers; nothing
here runs there. ``SOFTHSM2_CONF`` must be set before the module is loaded in a process.
"""

from __future__ import annotations

import os
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
        util = shutil.which("softhsm2-util")
        if util is None:
            raise HsmError("softhsm2-util not found: install softhsm2 (apt-get install softhsm2)")
        result = subprocess.run(
            [
                util,
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                user_pin,
                "--so-pin",
                so_pin,
            ],
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf_path)},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise HsmError(f"softhsm2-util --init-token failed: {result.stderr.strip()}")

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
