"""``gpuinv tenant create | list``: the cloud partners a token, a device or a profile can
belong to; created here first, since a partner-admin token names an existing tenant.

A tenant with its own identity-provider realm (DESIGN.md "Identity") is onboarded in the
same step: ``--issuer`` prints the GPUINV_OIDC_ISSUERS entry that makes the service trust
the realm's tokens for this tenant, and ``--issuers-file`` also adds it to the file that
GPUINV_OIDC_ISSUERS=@FILE names. Everything is checked before anything is created, and
the tenant and the file change are kept together or neither."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from api.cli.database import open_sessions
from api.cli.issuers_file import IssuersFile
from api.cli.output import fail, print_table
from api.db import quota as quota_db
from api.db import tenant as tenant_db
from api.db.models import TenantRow
from api.db.session import unit_of_work
from api.domain.access import Principal, cli_principal
from api.domain.errors import DomainError, bad_input
from api.domain.identity import (
    IssuerConfigError,
    parse_issuers,
    tenant_realm_entry,
)

DEFAULT_AUDIENCE = "gpuinv"
DEFAULT_ROLES_CLAIM = "groups"
# The entry's fields as this command's options name them, for messages.
_OPTION_OF_FIELD = {
    "issuer": "--issuer",
    "audience": "--audience",
    "tenant": "SLUG",
    "rolesClaim": "--roles-claim",
    "clientId": "--client-id",
}


@click.group()
def tenant() -> None:
    """Tenants (cloud partners)."""


@tenant.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug).")
@click.option(
    "--gpus",
    type=click.IntRange(min=0),
    help="Its initial quota: most GPUs it may hold at once (default: no limit).",
)
@click.option(
    "--nodes",
    type=click.IntRange(min=0),
    help="Its initial quota: most devices it may hold whole at once (default: no limit).",
)
@click.option(
    "--issuer",
    metavar="URL",
    help="Its identity provider's realm: the OpenID Connect issuer URL its tokens carry "
    "as `iss`. Prints the GPUINV_OIDC_ISSUERS entry to add.",
)
@click.option(
    "--audience",
    metavar="AUD",
    help=f"With --issuer: the `aud` its tokens carry for this API (default: {DEFAULT_AUDIENCE}).",
)
@click.option(
    "--client-id",
    metavar="ID",
    help="With --issuer: the dashboard's public client in that realm, for 'Sign in with…'.",
)
@click.option(
    "--roles-claim",
    metavar="NAME",
    help=f"With --issuer: the claim listing the user's roles (default: {DEFAULT_ROLES_CLAIM}).",
)
@click.option(
    "--issuers-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --issuer: also add the entry to this JSON array file (the one "
    "GPUINV_OIDC_ISSUERS=@FILE names), creating it if missing.",
)
def tenant_create(
    slug: str,
    name: str | None,
    gpus: int | None,
    nodes: int | None,
    issuer: str | None,
    audience: str | None,
    client_id: str | None,
    roles_claim: str | None,
    issuers_file: Path | None,
) -> None:
    """Create a tenant, with its initial quota if given; SLUG is lower-case letters,
    digits and '-'. Tenant and quota are created together, or neither.

    A tenant that signs its users in with its own identity-provider realm: give --issuer
    URL, and the service can trust that realm's tokens for this tenant (and this tenant
    only: such an issuer never grants platform-admin). Its tokens' roles claim values
    partner-admin, provisioner and viewer (the realm's default roles) map to those roles.
    The entry for GPUINV_OIDC_ISSUERS is printed on stdout as JSON; with --issuers-file it
    is also added to that file. Either way, restart the service to trust it. Everything is
    checked first: a bad URL, a file that is not a valid issuers array, or an issuer the
    file already has creates nothing.
    """
    given_without_issuer = [
        option
        for option, value in (
            ("--audience", audience),
            ("--client-id", client_id),
            ("--roles-claim", roles_claim),
            ("--issuers-file", issuers_file),
        )
        if value is not None and issuer is None
    ]
    if given_without_issuer:
        raise click.UsageError(
            f"{', '.join(given_without_issuer)}: only with --issuer URL (they describe the "
            "tenant's own identity provider)"
        )
    who = cli_principal()
    entry: dict[str, Any] | None = None
    file: IssuersFile | None = None
    try:
        if issuer is not None:
            entry = _realm_entry(
                issuer,
                tenant_db.check_slug("slug", slug),
                audience if audience is not None else DEFAULT_AUDIENCE,
                roles_claim if roles_claim is not None else DEFAULT_ROLES_CLAIM,
                client_id,
            )
            if issuers_file is not None:
                file = IssuersFile.read(issuers_file, entry)
        created = _create(who, slug, name, gpus, nodes, file)
    except DomainError as exc:
        fail(exc)
    if entry is None:
        click.echo(created.slug)
        return
    click.echo(json.dumps(entry, indent=2))
    if file is not None:
        then = f"Added its issuer to {file.path}; restart the service to trust it."
    else:
        then = (
            "Add this entry to GPUINV_OIDC_ISSUERS (a JSON array, or @file) and restart "
            "the service."
        )
    click.echo(f"Created tenant {created.slug!r}. {then}", err=True)


def _create(
    who: Principal,
    slug: str,
    name: str | None,
    gpus: int | None,
    nodes: int | None,
    file: IssuersFile | None,
) -> TenantRow:
    """Tenant, quota and the issuers file in one unit of work: the file is written last,
    just before the commit, and put back as it was if the commit fails."""
    written = False
    try:
        with unit_of_work(open_sessions(create=True)) as session:
            created = tenant_db.create_tenant(session, who, slug, name)
            if gpus is not None or nodes is not None:
                quota_db.set_quota(
                    session, who, quota_db.QuotaInput(created.slug, gpus=gpus, nodes=nodes)
                )
            if file is not None:
                file.write()
                written = True
    except BaseException:
        if written and file is not None:
            try:
                file.restore()
            except click.ClickException as exc:  # say so, but report what failed first
                click.echo(f"the tenant was not created, and {exc.message}", err=True)
        raise
    return created


def _realm_entry(
    issuer: str, slug: str, audience: str, roles_claim: str, client_id: str | None
) -> dict[str, Any]:
    """The tenant's GPUINV_OIDC_ISSUERS entry, checked by the rules the service applies at
    start-up; a refusal names the option and the value."""
    entry = tenant_realm_entry(issuer, slug, audience, roles_claim, client_id)
    try:
        parse_issuers([entry], "entry")
    except IssuerConfigError as exc:
        found = re.match(r"entry\[0\]\.(\w+)(.*)", str(exc), re.DOTALL)
        if found is None:
            raise bad_input(str(exc)) from None
        field, rest = found.groups()
        option = _OPTION_OF_FIELD.get(field, field)
        raise bad_input(f"{option}{rest}", field=option) from None
    # Stricter than start-up: the issuer is compared with `iss` and asked for its discovery
    # document, so it must be a URL with a host, and nothing after the path (OIDC Core 1.0).
    try:
        parts = urlsplit(issuer)
        usable = bool(parts.hostname) and not (parts.query or parts.fragment)
    except ValueError:  # e.g. an unclosed [ in an IPv6 host
        usable = False
    if not usable or re.search(r"\s", issuer):
        raise bad_input(
            "--issuer: an http(s) URL with a host, no spaces, no query or fragment, "
            f"got {issuer!r}",
            field="--issuer",
        )
    return entry


@tenant.command("list")
@click.option("--json", "as_json", is_flag=True)
def tenant_list(as_json: bool) -> None:
    """All tenants."""
    with open_sessions(create=False)() as session:
        tenants = tenant_db.list_tenants(session, cli_principal())
    if as_json:
        click.echo(
            json.dumps([{"id": t.id, "slug": t.slug, "name": t.name} for t in tenants], indent=2)
        )
        return
    print_table(("slug", "name"), [(t.slug, t.name) for t in tenants])
