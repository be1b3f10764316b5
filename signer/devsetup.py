"""``make run`` on a fresh machine: a SoftHSM token under ``.dev/`` with a dev CSCA and DSC,
approved by two dev security officers created in ``.dev/officers/`` (issue 4 dual control).

Runs in a short-lived child process, so the supervisor itself never loads the PKCS#11 module
(workers open it only after they start: STYLE.md "Concurrency").
"""

from __future__ import annotations

import logging
import multiprocessing
import secrets
import sys
from collections.abc import Callable

from hsm import HsmError, SoftHsm
from signer.config import Config
from signer.domain import Alg
from signer.errors import BackendError, SignerError
from signer.keys.devca import ensure_dev_keys
from signer.logs import configure
from signer.token import open_token


def prepare_dev_environment(config: Config, say: Callable[[str], None] = print) -> None:
    """Lay out SoftHSM under the dev directory and create the token and dev keys if missing."""
    if not config.dev.bootstrap:
        return
    softhsm = SoftHsm(config.softhsm_dir)
    softhsm.ensure_layout()
    softhsm.activate()  # inherited by the workers
    pin_file = config.dev_pin_file
    if not pin_file.exists():
        pin_file.parent.mkdir(parents=True, exist_ok=True)
        pin_file.touch(mode=0o600)
        pin_file.write_text(secrets.token_hex(8) + "\n")
    try:
        if not softhsm.has_token(config.hsm.token_label):
            say(f"creating SoftHSM token {config.hsm.token_label!r} in {softhsm.directory}")
            softhsm.init_token(config.hsm.token_label, config.read_pin(), secrets.token_hex(8))
    except HsmError as e:
        raise BackendError(str(e)) from e
    child = multiprocessing.get_context("spawn").Process(
        target=_ensure_keys_in_child, args=(config,), name="dev-setup"
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise BackendError("creating the dev keys failed (see the error above)")


def _ensure_keys_in_child(config: Config) -> None:
    configure(config.log, "dev-setup")
    log = logging.getLogger(__name__)
    try:
        token = open_token(config)
        try:
            ensure_dev_keys(
                token,
                config.dev_dir,
                config.issuer.country,
                [Alg(a) for a in config.dev.key_algorithms],
                log.info,
                config.officers_dir,
                config.dev_roster_pin_file,
            )
        finally:
            token.close()
    except (HsmError, SignerError) as e:
        log.error("%s", e)
        sys.exit(1)
