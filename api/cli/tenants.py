"""``gpuinv tenant create | list``: the cloud partners a token, a device or a profile can
belong to; created here first, since a partner-admin token names an existing tenant."""

from __future__ import annotations

import json

import click

from api.cli.database import open_sessions
from api.cli.output import fail, print_table
from api.db import tenant as tenant_db
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.errors import DomainError


@click.group()
def tenant() -> None:
    """Tenants (cloud partners)."""


@tenant.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug).")
def tenant_create(slug: str, name: str | None) -> None:
    """Create a tenant; SLUG is lower-case letters, digits and '-'."""
    try:
        with unit_of_work(open_sessions(create=True)) as session:
            created = tenant_db.create_tenant(session, cli_principal(), slug, name)
    except DomainError as exc:
        fail(exc)
    click.echo(created.slug)


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
