"""The pure part of OpenID Connect identities (api/domain/identity.py): the configuration's
checks, and claims → role and tenant."""

from __future__ import annotations

from typing import Any

import pytest

from api.domain.access import Role
from api.domain.errors import FORBIDDEN, UNAUTHENTICATED, DomainError
from api.domain.identity import IssuerConfigError, identity_from_claims, parse_issuers
from api.oidc import sign_in_options

REALM = {
    "issuer": "https://id.alpha.example/realms/alpha",
    "audience": "gpuinv",
    "tenant": "alpha",
    "roles": {"readers": "viewer", "ops": "provisioner", "admins": "partner-admin"},
}
STAFF = {
    "issuer": "https://id.example/staff",
    "audience": "gpuinv",
    "tenantClaim": "tenant",
    "rolesClaim": "roles",
    "roles": {"platform": "platform-admin", "noc": "viewer"},
}


def one(entry: dict[str, Any]) -> Any:
    return parse_issuers([entry], "GPUINV_OIDC_ISSUERS")[0]


def test_several_matching_values_give_the_strongest_role_whatever_their_order() -> None:
    config = one(REALM)
    for groups in (["readers", "admins", "ops"], ["admins", "readers"], ["ops", "admins"]):
        identity = identity_from_claims(config, {"sub": "u1", "groups": groups})
        assert identity.role == Role.PARTNER_ADMIN
    assert identity_from_claims(config, {"sub": "u1", "groups": "ops"}).role == Role.PROVISIONER


def test_a_realm_gives_its_tenant_and_names_the_holder_issuer_hash_subject() -> None:
    identity = identity_from_claims(one(REALM), {"sub": "u1", "groups": ["readers"]})
    assert identity.tenant_slug == "alpha"
    assert identity.name == "https://id.alpha.example/realms/alpha#u1"


def test_no_mapped_value_is_forbidden() -> None:
    with pytest.raises(DomainError) as refused:
        identity_from_claims(one(REALM), {"sub": "u1", "groups": ["strangers"]})
    assert refused.value.code == FORBIDDEN and "'groups'" in refused.value.message


def test_no_subject_is_unauthenticated() -> None:
    with pytest.raises(DomainError) as refused:
        identity_from_claims(one(REALM), {"groups": ["readers"]})
    assert refused.value.code == UNAUTHENTICATED


def test_tenant_claim_names_the_tenant_and_platform_admin_needs_none() -> None:
    config = one(STAFF)
    noc = identity_from_claims(config, {"sub": "n", "roles": ["noc"], "tenant": "beta"})
    assert (noc.role, noc.tenant_slug) == (Role.VIEWER, "beta")
    admin = identity_from_claims(config, {"sub": "a", "roles": ["platform"]})
    assert (admin.role, admin.tenant_slug) == (Role.PLATFORM_ADMIN, None)


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"roles": ["noc"]}, "no 'tenant' claim"),  # never platform-wide by omission
        ({"roles": ["platform"], "tenant": "beta"}, "spans every tenant"),
        ({"roles": ["noc"], "tenant": 7}, "not a tenant slug"),
    ],
)
def test_tenant_claim_refusals(claims: dict[str, Any], words: str) -> None:
    with pytest.raises(DomainError) as refused:
        identity_from_claims(one(STAFF), {"sub": "x", **claims})
    assert refused.value.code == FORBIDDEN and words in refused.value.message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"roles": {"admins": "platform-admin"}}, "[0].roles: an issuer bound to tenant"),
        ({"tenantClaim": "t"}, "[0].tenant: give exactly one"),
        ({"tenant": " "}, "[0].tenant: a non-empty string"),
        ({"issuer": "id.example"}, "[0].issuer: an http(s) URL"),
        ({"audience": ""}, "[0].audience: a non-empty string"),
        ({"roles": {"x": "root"}}, "[0].roles.x: unknown role 'root'"),
        ({"roles": {}}, "[0].roles: an object"),
        ({"opaque": "yes"}, "[0].opaque: true or false"),
        ({"audiance": "typo"}, "[0].audiance: unknown field"),
    ],
)
def test_bad_entries_are_refused_naming_the_entry_and_field(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(IssuerConfigError, match=r"^GPUINV_OIDC_ISSUERS") as refused:
        parse_issuers([{**REALM, **change}], "GPUINV_OIDC_ISSUERS")
    assert message in str(refused.value)


def test_an_issuer_given_twice_is_refused() -> None:
    with pytest.raises(IssuerConfigError, match=r"\[1\]\.issuer: .* given twice"):
        parse_issuers([REALM, REALM], "GPUINV_OIDC_ISSUERS")


def test_the_dashboard_is_offered_issuers_with_a_client_id_and_told_which_token_to_send() -> None:
    issuers = parse_issuers(
        [
            REALM | {"clientId": "gpuinv"},  # the ID token's aud is the client id: ours
            STAFF | {"clientId": "staff-dashboard"},  # access tokens carry our audience
            REALM | {"issuer": "https://id.beta.example/realms/beta", "tenant": "beta"},
        ],
        "GPUINV_OIDC_ISSUERS",
    )
    assert sign_in_options(issuers) == [
        {"issuer": REALM["issuer"], "clientId": "gpuinv", "token": "id_token"},
        {"issuer": STAFF["issuer"], "clientId": "staff-dashboard", "token": "access_token"},
    ]
