"""The authorisation policy: roles → RPCs, certificate types, the default role, metric labels."""

from __future__ import annotations

from typing import Any

import pytest

from signer.config import config_from_mapping, dev_defaults
from signer.domain import CertType
from signer.front.policy import RPC_PERMISSIONS, Policy, type_not_allowed

ALL_RPCS = ("SignBatch", "SignStream", "Reissue", "Verify", "GetTrustList", "SignHash")


def _policy(default: str = "none", clients: list[dict[str, Any]] | None = None) -> Policy:
    return Policy.from_config(
        config_from_mapping({"policy": {"default": default, "clients": clients or []}})
    )


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("issuer", {"SignBatch", "SignStream", "Reissue", "Verify", "GetTrustList"}),
        ("reader", {"Verify", "GetTrustList"}),
        ("hash-signer", {"SignHash", "GetTrustList"}),
        ("none", set()),
    ],
)
def test_each_role_allows_exactly_its_rpcs(role: str, allowed: set[str]) -> None:
    grant = _policy(clients=[{"name": "c", "roles": [role]}]).grant("c")
    assert {rpc for rpc in ALL_RPCS if grant.allows(rpc)} == allowed


def test_roles_add_up_and_unknown_rpcs_are_refused_to_everyone() -> None:
    grant = _policy(clients=[{"name": "c", "roles": ["reader", "hash-signer"]}]).grant("c")
    assert {rpc for rpc in ALL_RPCS if grant.allows(rpc)} == {"Verify", "GetTrustList", "SignHash"}
    everything = _policy(clients=[{"name": "c", "roles": ["issuer", "hash-signer"]}]).grant("c")
    assert all(everything.allows(rpc) for rpc in RPC_PERMISSIONS)
    assert not everything.allows("Health") and not everything.allows("signbatch")


def test_client_types_and_limits_override_the_defaults() -> None:
    policy = _policy(
        clients=[
            {
                "name": "his-hanoi",
                "roles": ["issuer"],
                "types": ["vaccination", "test"],
                "items_per_second": 2000,
                "burst": 5000,
                "items_per_day": 2_000_000,
            }
        ]
    )
    grant = policy.grant("his-hanoi")
    assert grant.known and grant.identity == "his-hanoi"
    assert grant.types == {CertType.VACCINATION, CertType.TEST}
    assert grant.may_sign(CertType.TEST) and not grant.may_sign(CertType.RECOVERY)
    assert grant.limits.items_per_second == 2000.0 and grant.limits.burst == 5000
    assert grant.limits.items_per_day == 2_000_000
    assert grant.limits.max_in_flight_items == 10000  # from [quotas]


@pytest.mark.parametrize(("default", "signs"), [("issuer", True), ("reader", False)])
def test_a_client_the_policy_does_not_name_gets_the_default(default: str, signs: bool) -> None:
    policy = _policy(default=default, clients=[{"name": "known", "roles": ["none"]}])
    grant = policy.grant("stranger")
    assert not grant.known and grant.identity == "stranger"
    assert grant.allows("SignBatch") is signs and grant.allows("Verify")
    assert grant.types == set(CertType)
    assert grant.limits.burst == 100000  # [quotas] defaults
    assert not policy.grant("known").allows("Verify")  # a named client never gets the default
    assert policy.grant("Known").known is False  # names match exactly


def test_grants_are_cached_per_identity() -> None:
    policy = _policy(clients=[{"name": "a", "roles": ["issuer"]}])
    assert policy.grant("a") is policy.grant("a")
    assert policy.grant("x") is policy.grant("x")
    assert policy.grant("x") is not policy.grant("y")


def test_metric_labels_are_bounded_by_the_config() -> None:
    policy = _policy(clients=[{"name": "a", "roles": ["issuer"]}])
    assert policy.metric_label("a") == "a"
    assert {policy.metric_label(f"client-{n}") for n in range(50)} == {"other"}


def test_embedded_dev_default_lets_any_client_issue() -> None:
    policy = Policy.from_config(dev_defaults())
    assert policy.grant("anyone").allows("SignBatch")
    assert not policy.grant("anyone").allows("SignHash")


def test_a_config_file_without_a_policy_gives_unnamed_clients_nothing() -> None:
    """Fail closed: a production config that forgets [policy] lets no unnamed client sign."""
    policy = Policy.from_config(config_from_mapping({}))
    assert not any(policy.grant("anyone").allows(rpc) for rpc in ("SignBatch", "Verify"))


@pytest.mark.parametrize(
    ("cert_type", "path"),
    [(CertType.VACCINATION, "/v"), (CertType.TEST, "/t"), (CertType.RECOVERY, "/r")],
)
def test_type_not_allowed_points_at_the_group(cert_type: CertType, path: str) -> None:
    error = type_not_allowed(cert_type)
    assert error.code == "type_not_allowed" and error.path == path
    assert cert_type.value in error.message
