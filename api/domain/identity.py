"""OpenID Connect identities: which issuers are trusted, and what a verified token's claims
make of their holder (a role and a tenant), as pure rules.

Fetching keys and checking signatures is api/oidc.py's business; this module only sees
the configuration (DESIGN.md "Identity", GPUINV_OIDC_ISSUERS) and claims already verified,
so the mapping can be tested as data in, value out.

Several claim values may map to roles (a user in both "ops" and "admins"): the strongest
role wins. An identity provider lists groups in no meaningful order, so "the first" would
change a user's rights with the order of a list nobody looks at; the strongest is what the
user was plainly granted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.domain.access import Role
from api.domain.errors import FORBIDDEN, UNAUTHENTICATED, DomainError

# Strongest first: the order in which several matching claim values are resolved.
ROLE_STRENGTH = (Role.PLATFORM_ADMIN, Role.PARTNER_ADMIN, Role.PROVISIONER, Role.VIEWER)

_KNOWN_FIELDS = frozenset(
    {"issuer", "audience", "tenant", "tenantClaim", "rolesClaim", "roles", "clientId", "opaque"}
)


@dataclass(frozen=True)
class IssuerConfig:
    """One trusted issuer: one entry of GPUINV_OIDC_ISSUERS."""

    issuer: str
    audience: str
    roles: Mapping[str, Role]
    tenant: str | None = None  # every token of this issuer acts for this tenant (a realm)
    tenant_claim: str | None = None  # ... or the tenant is named by this claim
    roles_claim: str = "groups"
    client_id: str | None = None  # the dashboard's public client (not used by the API)
    opaque: bool = False  # whether opaque access tokens are asked about here


@dataclass(frozen=True)
class Identity:
    """What a verified token says about its holder, before the tenant is looked up."""

    issuer: str
    subject: str
    role: Role
    tenant_slug: str | None

    @property
    def name(self) -> str:
        """How the audit log and `me` name the holder."""
        return f"{self.issuer}#{self.subject}"


class IssuerConfigError(ValueError):
    """A bad GPUINV_OIDC_ISSUERS entry; the message names the entry and the field."""


def parse_issuers(entries: Any, where: str) -> tuple[IssuerConfig, ...]:
    """The issuers of a decoded GPUINV_OIDC_ISSUERS value; ``where`` labels messages."""
    if not isinstance(entries, list):
        raise IssuerConfigError(f"{where}: expected a JSON array of issuer objects")
    found: list[IssuerConfig] = []
    for number, entry in enumerate(entries):
        config = _parse_issuer(entry, f"{where}[{number}]")
        if any(other.issuer == config.issuer for other in found):
            raise IssuerConfigError(f"{where}[{number}].issuer: {config.issuer!r} is given twice")
        found.append(config)
    return tuple(found)


def tenant_realm_entry(
    issuer: str,
    tenant: str,
    audience: str = "gpuinv",
    roles_claim: str = "groups",
    client_id: str | None = None,
) -> dict[str, Any]:
    """The GPUINV_OIDC_ISSUERS entry for a tenant's own realm: every token of ``issuer``
    acts for ``tenant``. A realm is created with default roles named after ours (seed 002),
    so each maps to itself; never platform-admin, which spans every tenant (parse_issuers
    refuses it for a tenant-bound issuer anyway). Not validated: see parse_issuers."""
    entry: dict[str, Any] = {
        "issuer": issuer,
        "audience": audience,
        "tenant": tenant,
        "rolesClaim": roles_claim,
        "roles": {role.value: role.value for role in ROLE_STRENGTH if role != Role.PLATFORM_ADMIN},
    }
    if client_id is not None:
        entry["clientId"] = client_id
    return entry


def add_issuer(entries: Any, entry: dict[str, Any], where: str) -> list[Any]:
    """``entries`` (a decoded GPUINV_OIDC_ISSUERS value, labelled ``where``) with ``entry``
    appended, the others as they were. Refuses entries the service would refuse at start,
    and an issuer already among them (naming the entry that has it): a second entry for
    one issuer would stop the service from starting."""
    existing = parse_issuers(entries, where)
    for number, other in enumerate(existing):
        if other.issuer == entry.get("issuer"):
            bound = f"tenant {other.tenant!r}" if other.tenant else f"claim {other.tenant_claim!r}"
            raise IssuerConfigError(
                f"{where}[{number}].issuer: {other.issuer!r} is already trusted there ({bound})"
            )
    added = [*entries, entry]
    parse_issuers(added, where)
    return added


def _parse_issuer(entry: Any, label: str) -> IssuerConfig:
    if not isinstance(entry, dict):
        raise IssuerConfigError(f"{label}: expected an object with issuer, audience and roles")
    unknown = sorted(set(entry) - _KNOWN_FIELDS)
    if unknown:
        raise IssuerConfigError(
            f"{label}.{unknown[0]}: unknown field (known: {', '.join(sorted(_KNOWN_FIELDS))})"
        )
    issuer = entry.get("issuer")
    if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
        raise IssuerConfigError(f"{label}.issuer: an http(s) URL, got {issuer!r}")
    audience = _text(entry, "audience", label, required=True)
    tenant = _text(entry, "tenant", label)
    tenant_claim = _text(entry, "tenantClaim", label)
    if (tenant is None) == (tenant_claim is None):
        raise IssuerConfigError(
            f"{label}.tenant: give exactly one of tenant (a slug) or tenantClaim (a claim name)"
        )
    roles_claim = _text(entry, "rolesClaim", label) or "groups"
    roles = _roles(entry.get("roles"), f"{label}.roles")
    if tenant is not None and Role.PLATFORM_ADMIN in roles.values():
        raise IssuerConfigError(
            f"{label}.roles: an issuer bound to tenant {tenant!r} can never grant "
            f"{Role.PLATFORM_ADMIN.value!r}"
        )
    opaque = entry.get("opaque", False)
    if not isinstance(opaque, bool):
        raise IssuerConfigError(f"{label}.opaque: true or false, got {opaque!r}")
    return IssuerConfig(
        issuer=issuer,  # compared with `iss` exactly, trailing slash and all
        audience=audience or "",
        roles=roles,
        tenant=tenant,
        tenant_claim=tenant_claim,
        roles_claim=roles_claim,
        client_id=_text(entry, "clientId", label),
        opaque=opaque,
    )


def _text(entry: dict[str, Any], name: str, label: str, required: bool = False) -> str | None:
    value = entry.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise IssuerConfigError(f"{label}.{name}: a non-empty string, got {value!r}")
    return value.strip()


def _roles(raw: Any, label: str) -> dict[str, Role]:
    if not isinstance(raw, dict) or not raw:
        raise IssuerConfigError(f"{label}: an object of {{claim value: role}}, got {raw!r}")
    roles: dict[str, Role] = {}
    for value, role in raw.items():
        try:
            roles[value] = Role(role)
        except ValueError:
            raise IssuerConfigError(
                f"{label}.{value}: unknown role {role!r} "
                f"(one of: {', '.join(r.value for r in Role)})"
            ) from None
    return roles


def identity_from_claims(config: IssuerConfig, claims: Mapping[str, Any]) -> Identity:
    """The holder of a verified token of ``config``'s issuer. Raises UNAUTHENTICATED for
    claims no valid token has (no subject), FORBIDDEN for a valid holder this service
    grants nothing: no role, or a role and tenant that cannot go together."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise DomainError(UNAUTHENTICATED, "OpenID Connect token refused: no subject (sub)")
    role = strongest_role(config, claims.get(config.roles_claim))
    tenant = config.tenant or _claimed_tenant(config, claims)
    if role == Role.PLATFORM_ADMIN and tenant is not None:
        raise DomainError(
            FORBIDDEN,
            f"OpenID Connect token refused: role {role.value!r} spans every tenant, but the "
            f"token names tenant {tenant!r}",
        )
    if role != Role.PLATFORM_ADMIN and tenant is None:
        # A tenant user whose token lost its tenant claim must not become platform-wide.
        raise DomainError(
            FORBIDDEN,
            f"OpenID Connect token refused: no {config.tenant_claim!r} claim naming a tenant",
        )
    return Identity(issuer=config.issuer, subject=subject, role=role, tenant_slug=tenant)


def strongest_role(config: IssuerConfig, claim: Any) -> Role:
    """The strongest role the roles claim's values map to (a string or a list of them)."""
    values = [claim] if isinstance(claim, str) else claim if isinstance(claim, list) else []
    granted = {config.roles[v] for v in values if isinstance(v, str) and v in config.roles}
    for role in ROLE_STRENGTH:
        if role in granted:
            return role
    raise DomainError(
        FORBIDDEN,
        f"OpenID Connect token refused: no value of its {config.roles_claim!r} claim maps to "
        "a role",
    )


def _claimed_tenant(config: IssuerConfig, claims: Mapping[str, Any]) -> str | None:
    value = claims.get(config.tenant_claim or "")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise DomainError(
            FORBIDDEN,
            f"OpenID Connect token refused: its {config.tenant_claim!r} claim is not a tenant slug",
        )
    return value
