"""``signer validate``: the signing path's payload checks, offline, over a JSONL file (issue 12).

No server, HSM or PIN: each line gets exactly the checks ``SigningService`` runs before signing
(size, JSON, ``validate_payload`` under the config's ``[validation]`` policy, duplicate UVCIs),
so a file that validates here is refused by ``signer sign`` only for key or policy reasons.
"""

from __future__ import annotations

from signer.validate.cli import add_validate_parser, run_validate

__all__ = ["add_validate_parser", "run_validate"]
