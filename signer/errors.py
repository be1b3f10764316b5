"""Errors grouped by whose fault they are.

One root, ``SignerError``; each branch tells the operator who has to act (STYLE.md "Errors"):
the operator's configuration, the client's request, the security officer's keys, or the HSM.
The front maps each branch to one status code (signer/front/handlers.py); the CLI catches the
root once.

Problems with a single item of a batch are *not* exceptions: they travel as
:class:`signer.domain.ItemError` values inside the batch result.
"""

from __future__ import annotations


class SignerError(Exception):
    """Root of every error the appliance raises on purpose."""


class ConfigError(SignerError):
    """The operator's configuration or environment is wrong (bad TOML, missing PIN, …)."""


class RequestError(SignerError):
    """The client's request as a whole is unacceptable (e.g. a batch over the size limit)."""


class KeyStateError(SignerError):
    """No usable key: none active, DSC expired or not yet valid, attributes too weak, …"""


class BackendError(SignerError):
    """The HSM (PKCS#11 module, token, session) failed or is unreachable."""
