"""Authorisation (issue 7 §3): which RPCs a client may call and which certificate types it may sign.

Pure and transport-free: the front's request handlers ask :meth:`Policy.grant` with the client's
TLS identity and check :meth:`Grant.allows` before parsing anything, so a forbidden RPC is
answered PERMISSION_DENIED before any work; per-item type checks use :meth:`Grant.may_sign` and
:func:`type_not_allowed`. Health and server reflection are not the policy's business: they are
open to every client that passed the TLS handshake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from signer.config import ClientLimits
from signer.domain import GROUP_BY_CERT_TYPE, CertType, ItemError

if TYPE_CHECKING:
    from signer.config import Config

__all__ = [
    "POLICY_ERROR_CODES",
    "ROLES",
    "RPC_PERMISSIONS",
    "ClientLimits",
    "Grant",
    "Policy",
    "type_not_allowed",
]

#: The permission each RPC needs. An RPC not listed here is refused to everyone (fail closed).
RPC_PERMISSIONS: dict[str, str] = {
    "SignBatch": "sign",
    "SignStream": "sign",
    "Reissue": "reissue",
    "Verify": "verify",
    "GetTrustList": "trust_list",
    "SignHash": "sign_hash",
}

#: Built-in roles → permissions. ``[policy] default`` and ``roles`` name these.
ROLES: dict[str, frozenset[str]] = {
    "issuer": frozenset({"sign", "reissue", "verify", "trust_list"}),
    "reader": frozenset({"trust_list", "verify"}),
    "hash-signer": frozenset({"sign_hash", "trust_list"}),
    "none": frozenset(),
}

#: Per-item error codes the policy produces (listed in the README's item-errors table).
POLICY_ERROR_CODES: dict[str, str] = {
    "type_not_allowed": "The client may not sign this certificate type ([policy]).",
}

#: The metric label of every client the policy does not name (bounded label cardinality).
OTHER_LABEL = "other"

# Grants of clients the policy does not name are cached too, up to this many identities; past
# it they are built per call (a few hundred nanoseconds), so a CA that issued many certificates
# cannot grow the front's memory without bound.
_MAX_CACHED_UNKNOWN = 10_000


@dataclass(frozen=True, slots=True)
class Grant:
    """What one client identity may do: its permissions, certificate types and quotas.

    ``known`` is False for a client the policy does not name (it got ``[policy] default``).
    """

    identity: str
    known: bool
    permissions: frozenset[str]
    types: frozenset[CertType]
    limits: ClientLimits

    def allows(self, rpc: str) -> bool:
        """Whether the client may call ``rpc`` (a method name such as ``"SignBatch"``)."""
        permission = RPC_PERMISSIONS.get(rpc)
        return permission is not None and permission in self.permissions

    @property
    def metric_label(self) -> str:
        """The client's metric label: its name when the policy names it, else ``"other"``
        (labels stay bounded by the config, whatever identities connect)."""
        return self.identity if self.known else OTHER_LABEL

    def may_sign(self, cert_type: CertType) -> bool:
        """Whether the client may sign (or re-issue) a certificate of this type."""
        return cert_type in self.types


def type_not_allowed(cert_type: CertType) -> ItemError:
    """The per-item error of a certificate whose type the client may not sign; the path points
    at the payload's group (``/v``, ``/t`` or ``/r``) so the client sees which one it was."""
    return ItemError(
        code="type_not_allowed",
        path=f"/{GROUP_BY_CERT_TYPE[cert_type]}",
        message=f"this client may not sign {cert_type.value} certificates ([policy])",
    )


class Policy:
    """The authorisation policy, built once from the config; :meth:`grant` is O(1)."""

    __slots__ = ("_default", "_grants", "_unknown")

    def __init__(self, grants: dict[str, Grant], default: Grant) -> None:
        """``grants`` by identity for the named clients; ``default`` is the template of every
        other client (its ``identity`` is replaced per client)."""
        self._grants = grants
        self._default = default
        self._unknown: dict[str, Grant] = {}

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        """The policy of ``[policy]`` and ``[quotas]`` (already validated by the config loader)."""
        quotas = config.quotas
        grants = {
            client.name: Grant(
                identity=client.name,
                known=True,
                permissions=frozenset().union(*(ROLES[r] for r in client.roles)),
                types=frozenset(client.types),
                limits=client.limits(quotas),
            )
            for client in config.policy.clients
        }
        default = Grant(
            identity="",
            known=False,
            permissions=ROLES[config.policy.default],
            types=frozenset(CertType),
            limits=quotas.limits(),
        )
        return cls(grants, default)

    def grant(self, identity: str) -> Grant:
        """The grant of a client identity (exact, case-sensitive match on the configured name);
        a client the policy does not name gets the ``[policy] default`` role and [quotas]."""
        grant = self._grants.get(identity) or self._unknown.get(identity)
        if grant is not None:
            return grant
        d = self._default
        grant = Grant(identity, False, d.permissions, d.types, d.limits)
        if len(self._unknown) < _MAX_CACHED_UNKNOWN:
            self._unknown[identity] = grant
        return grant

    def metric_label(self, identity: str) -> str:
        """``identity`` when the policy names it, else ``"other"``: metric labels stay bounded
        by the config, whatever identities connect."""
        return identity if identity in self._grants else OTHER_LABEL
