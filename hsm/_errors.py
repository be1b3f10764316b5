"""Errors of the HSM layer; ``signer`` maps them onto its own branches with ``raise … from``."""

from __future__ import annotations


class HsmError(Exception):
    """The PKCS#11 module, token or session failed."""


class HsmLoginError(HsmError):
    """The token was not found or refused the PIN."""


class WeakKeyError(HsmError):
    """A private key's attributes allow more than signing, or let the key leave the token."""
