"""Who may do what. Pure rules; the API asks them, the database never decides."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from api.domain.errors import BAD_INPUT, FORBIDDEN, UNAUTHENTICATED, DomainError


class Role(StrEnum):
    PLATFORM_ADMIN = "platform-admin"  # everything, every tenant
    PARTNER_ADMIN = "partner-admin"  # one tenant's inventory: read and write
    PROVISIONER = "provisioner"  # match / release for its tenant; reads inventory
    VIEWER = "viewer"  # read only


# Roles that must be bound to one tenant. Provisioners and viewers may be platform-wide
# (a shared pipeline, a NOC dashboard); a partner admin without a tenant would be a
# platform admin by accident, so it is refused.
TENANT_BOUND = {Role.PARTNER_ADMIN}


@dataclass(frozen=True)
class Principal:
    """The caller of one request, resolved from its bearer token."""

    name: str
    role: Role
    tenant_id: str | None = None
    tenant_slug: str | None = None
    token_id: str | None = None
    request_id: str | None = None  # carried into the audit log
    # An OpenID Connect token's issuer and subject (None for the service's own tokens);
    # its name is then "issuer#subject", which the audit log records.
    issuer: str | None = None
    subject: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return self.name

    # The tenancy rule, written here once. api/db/scope.py turns it into SQL; nothing else
    # compares a principal's tenant with a row's.

    @property
    def scope_tenant_id(self) -> str | None:
        """None means every tenant; otherwise the only tenant whose rows this caller sees,
        names or changes. Platform admins see every tenant; so do provisioners and viewers
        not bound to a tenant (a shared pipeline, a NOC dashboard)."""
        return None if self.role == Role.PLATFORM_ADMIN else self.tenant_id

    def may_see(self, tenant_id: str | None) -> bool:
        """Whether a row owned by ``tenant_id`` (None: the platform's) is visible."""
        return self.scope_tenant_id is None or tenant_id == self.scope_tenant_id

    def may_see_shared(self, tenant_id: str | None) -> bool:
        """Whether a machine (a device or a VM) owned by ``tenant_id`` is visible: one the
        caller may see, or one of the platform's shared pool (no tenant), which every
        tenant matches and so may read: its document and free amounts, never who holds it
        (DESIGN.md "The pool"). Changing it stays the platform's (``may_see``)."""
        return tenant_id is None or self.may_see(tenant_id)

    @property
    def namespace(self) -> str | None:
        """Where this caller's named things live (profiles): its tenant's namespace, or
        for a platform admin the platform's (None). Names are unique per namespace."""
        return None if self.role == Role.PLATFORM_ADMIN else self.tenant_id

    def may_use(self, namespace: str | None) -> bool:
        """Whether things of a namespace serve this caller: the platform's serve every
        tenant, a tenant's serve that tenant (and platform admins, who manage them)."""
        return self.is_platform_admin or namespace is None or namespace == self.tenant_id

    @property
    def sees_platform_operations(self) -> bool:
        """Platform staff (any token not bound to a tenant) may read how the platform's
        own machinery runs: the sync's errors and summaries name any tenant's items."""
        return self.tenant_id is None

    def may_decide_for(self, tenant_id: str | None) -> bool:
        """Whether this caller approves and rejects the provision requests of
        ``tenant_id`` (None: platform-wide ones): platform admins all of them, a
        partner-admin its own tenant's."""
        if self.role == Role.PLATFORM_ADMIN:
            return True
        return (
            self.role == Role.PARTNER_ADMIN
            and tenant_id is not None
            and (tenant_id == self.tenant_id)
        )

    @property
    def is_platform_admin(self) -> bool:
        return self.role == Role.PLATFORM_ADMIN

    def require_inventory_write(self) -> None:
        if self.role not in (Role.PLATFORM_ADMIN, Role.PARTNER_ADMIN):
            raise DomainError(
                FORBIDDEN,
                f"role {self.role.value!r} may not change the "
                "inventory (needs platform-admin or partner-admin)",
            )

    def require_platform_admin(self, what: str) -> None:
        if self.role != Role.PLATFORM_ADMIN:
            raise DomainError(FORBIDDEN, f"only a platform-admin may {what}")

    def require_platform_view(self, what: str) -> None:
        """Views of the whole platform (every tenant at once) need a token not bound to a
        tenant."""
        if self.scope_tenant_id is not None:
            raise DomainError(
                FORBIDDEN, f"{what} is the platform's view: use a token not bound to a tenant"
            )


def cli_principal() -> Principal:
    """The operator at the server's own shell: whoever can read the database is an admin."""
    import getpass

    return Principal(name=f"cli:{getpass.getuser()}", role=Role.PLATFORM_ADMIN)


def require_principal(principal: Principal | None, problem: str | None) -> Principal:
    if principal is None:
        raise DomainError(
            UNAUTHENTICATED,
            problem
            or "missing bearer token: send "
            "'Authorization: Bearer <token>' (create one with `gpuinv token "
            "create`)",
        )
    return principal


def validate_token_grant(role_text: str, tenant: str | None) -> Role:
    try:
        role = Role(role_text)
    except ValueError:
        raise DomainError(
            BAD_INPUT,
            f"role: unknown role {role_text!r} (one of: {', '.join(r.value for r in Role)})",
        ) from None
    if role in TENANT_BOUND and not tenant:
        raise DomainError(BAD_INPUT, f"tenant: role {role.value!r} needs --tenant")
    if role == Role.PLATFORM_ADMIN and tenant:
        raise DomainError(
            BAD_INPUT, "tenant: a platform-admin token spans every tenant; drop --tenant"
        )
    return role
