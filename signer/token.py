"""Finding the PKCS#11 module and logging in: the one way every process opens the token."""

from __future__ import annotations

import os

from hsm import HsmError, HsmToken, SoftHsm, find_softhsm_module
from signer.config import Config
from signer.errors import BackendError, ConfigError


def resolve_module(config: Config) -> str:
    """The PKCS#11 module path; ``softhsm`` means the locally installed SoftHSM."""
    if config.hsm.module != "softhsm":
        if not os.path.exists(config.hsm.module):
            raise ConfigError(f"[hsm] module {config.hsm.module!r} does not exist")
        return config.hsm.module
    module = find_softhsm_module()
    if module is None:
        raise ConfigError(
            "SoftHSM is not installed: run 'make run' (it installs softhsm2 with apt) or "
            "'apt-get install softhsm2', or set [hsm] module to your vendor's PKCS#11 module"
        )
    return module


def open_token(config: Config) -> HsmToken:
    """A logged-in session on the configured token (the PIN from env or file)."""
    try:
        return HsmToken(resolve_module(config), config.hsm.token_label, config.read_pin())
    except HsmError as e:
        raise BackendError(str(e)) from e


def open_existing_token(config: Config) -> HsmToken:
    """:func:`open_token` for the command-line tools: with a dev config, the dev token the
    appliance created (never a new one)."""
    if config.dev.bootstrap:
        softhsm = SoftHsm(config.softhsm_dir)
        if not softhsm.conf_path.exists():
            raise ConfigError(
                f"no dev token under {config.softhsm_dir}: start the dev appliance once "
                "('make run' or 'signer serve') to create it"
            )
        softhsm.activate()
    return open_token(config)
