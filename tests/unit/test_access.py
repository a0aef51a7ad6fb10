"""Who may do what: roles, token grants and the require_* checks (pure rules, no database)."""

from __future__ import annotations

import dataclasses
import getpass
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.domain.access import (
    TENANT_BOUND,
    Principal,
    Role,
    cli_principal,
    require_principal,
    validate_token_grant,
)
from api.domain.errors import BAD_INPUT, FORBIDDEN, UNAUTHENTICATED, DomainError

ADMINS = [Role.PLATFORM_ADMIN, Role.PARTNER_ADMIN]
NON_WRITERS = [Role.PROVISIONER, Role.VIEWER]


def principal(role: Role, tenant: str | None = "t-1") -> Principal:
    tenant_id = None if role == Role.PLATFORM_ADMIN else tenant
    slug = "acme" if tenant_id else None
    return Principal(name=f"token:{role.value}", role=role, tenant_id=tenant_id, tenant_slug=slug)


def refusal(call: Callable[..., object], *args: object) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call(*args)
    return caught.value


# --- roles ------------------------------------------------------------------------------------


def test_roles_are_spelt_as_in_the_design() -> None:
    assert [role.value for role in Role] == [
        "platform-admin",
        "partner-admin",
        "provisioner",
        "viewer",
    ]


def test_only_partner_admins_must_be_bound_to_a_tenant() -> None:
    assert {Role.PARTNER_ADMIN} == TENANT_BOUND


# --- validate_token_grant -----------------------------------------------------------------------


def test_grants_a_platform_admin_token_without_a_tenant() -> None:
    assert validate_token_grant("platform-admin", None) is Role.PLATFORM_ADMIN
    assert validate_token_grant("platform-admin", "") is Role.PLATFORM_ADMIN


def test_grants_a_partner_admin_token_for_a_tenant() -> None:
    assert validate_token_grant("partner-admin", "acme") is Role.PARTNER_ADMIN


@pytest.mark.parametrize("role", ["provisioner", "viewer"])
@pytest.mark.parametrize("tenant", [None, "acme"])
def test_provisioners_and_viewers_may_be_tenant_bound_or_platform_wide(
    role: str, tenant: str | None
) -> None:
    assert validate_token_grant(role, tenant) is Role(role)


@pytest.mark.parametrize("tenant", [None, ""])
def test_refuses_a_partner_admin_token_without_a_tenant(tenant: str | None) -> None:
    error = refusal(validate_token_grant, "partner-admin", tenant)
    assert error.code == BAD_INPUT
    assert error.message == "tenant: role 'partner-admin' needs --tenant"


def test_refuses_a_platform_admin_token_bound_to_a_tenant() -> None:
    error = refusal(validate_token_grant, "platform-admin", "acme")
    assert error.code == BAD_INPUT
    assert error.message == ("tenant: a platform-admin token spans every tenant; drop --tenant")


@pytest.mark.parametrize("role", ["admin", "Viewer", "PLATFORM-ADMIN", " viewer", "", "root"])
def test_refuses_an_unknown_role_listing_the_known_ones(role: str) -> None:
    error = refusal(validate_token_grant, role, None)
    assert error.code == BAD_INPUT
    assert error.message == (
        f"role: unknown role {role!r} (one of: platform-admin, partner-admin, provisioner, viewer)"
    )


@given(st.text(max_size=20), st.one_of(st.none(), st.text(max_size=10)))
def test_property_a_grant_is_a_known_role_or_a_bad_input_naming_the_wrong_field(
    role_text: str, tenant: str | None
) -> None:
    try:
        role = validate_token_grant(role_text, tenant)
    except DomainError as error:
        assert error.code == BAD_INPUT
        known = role_text in {r.value for r in Role}
        assert error.message.startswith("tenant: " if known else "role: ")
        return
    assert role.value == role_text
    assert not (role == Role.PARTNER_ADMIN and not tenant)
    assert not (role == Role.PLATFORM_ADMIN and tenant)


# --- Principal ------------------------------------------------------------------------------


def test_a_platform_admin_sees_every_tenant() -> None:
    admin = principal(Role.PLATFORM_ADMIN)
    assert admin.scope_tenant_id is None
    assert admin.is_platform_admin


def test_a_platform_admin_sees_every_tenant_even_if_a_tenant_is_recorded() -> None:
    admin = Principal(name="ops", role=Role.PLATFORM_ADMIN, tenant_id="t-1")
    assert admin.scope_tenant_id is None


@pytest.mark.parametrize("role", [Role.PARTNER_ADMIN, Role.PROVISIONER, Role.VIEWER])
def test_every_other_role_sees_only_its_own_tenant(role: Role) -> None:
    caller = principal(role, "t-7")
    assert caller.scope_tenant_id == "t-7"
    assert not caller.is_platform_admin


@pytest.mark.parametrize("role", [Role.PROVISIONER, Role.VIEWER])
def test_a_platform_wide_provisioner_or_viewer_sees_every_tenant(role: Role) -> None:
    assert principal(role, None).scope_tenant_id is None


def test_the_audit_log_names_the_caller_by_its_name() -> None:
    assert Principal(name="token:ci-pipeline", role=Role.PROVISIONER).actor == "token:ci-pipeline"


def test_a_principal_cannot_be_changed_after_it_is_resolved() -> None:
    caller = principal(Role.VIEWER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        caller.role = Role.PLATFORM_ADMIN  # type: ignore[misc]


# --- require_inventory_write / require_platform_admin -------------------------------------------


@pytest.mark.parametrize("role", ADMINS)
def test_admins_may_change_the_inventory(role: Role) -> None:
    principal(role).require_inventory_write()  # does not raise


@pytest.mark.parametrize("role", NON_WRITERS)
def test_provisioners_and_viewers_may_not_change_the_inventory(role: Role) -> None:
    error = refusal(principal(role).require_inventory_write)
    assert error.code == FORBIDDEN
    assert error.message == (
        f"role {role.value!r} may not change the inventory (needs platform-admin or partner-admin)"
    )


def test_a_platform_admin_passes_the_platform_admin_check() -> None:
    principal(Role.PLATFORM_ADMIN).require_platform_admin("create tenants")  # does not raise


@pytest.mark.parametrize("role", [Role.PARTNER_ADMIN, Role.PROVISIONER, Role.VIEWER])
def test_every_other_role_fails_the_platform_admin_check_saying_what_was_refused(
    role: Role,
) -> None:
    error = refusal(principal(role).require_platform_admin, "create tenants")
    assert error.code == FORBIDDEN
    assert error.message == "only a platform-admin may create tenants"
    assert str(error) == error.message


# --- require_principal / cli_principal --------------------------------------------------------


def test_a_request_without_a_principal_is_unauthenticated_with_a_how_to() -> None:
    error = refusal(require_principal, None, None)
    assert error.code == UNAUTHENTICATED
    assert "Authorization: Bearer <token>" in error.message
    assert "gpuinv token create" in error.message


def test_an_unauthenticated_refusal_says_what_was_wrong_with_the_token() -> None:
    error = refusal(require_principal, None, "token revoked")
    assert (error.code, error.message) == (UNAUTHENTICATED, "token revoked")


def test_a_resolved_principal_is_returned_as_is() -> None:
    caller = principal(Role.VIEWER)
    assert require_principal(caller, None) is caller


def test_the_cli_operator_is_a_platform_admin_named_after_the_shell_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "alice")
    operator = cli_principal()
    assert operator.name == operator.actor == "cli:alice"
    assert operator.role is Role.PLATFORM_ADMIN
    assert operator.scope_tenant_id is None
    operator.require_inventory_write()
    operator.require_platform_admin("create tenants")
