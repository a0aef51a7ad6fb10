"""``gpuinv tenant create | list``: the cloud partners a token, a device or a profile can
belong to; created here first, since a partner-admin token names an existing tenant."""

from __future__ import annotations

import json

import click

from api.cli.database import open_sessions
from api.cli.output import fail, print_table
from api.db import quota as quota_db
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
def tenant_create(slug: str, name: str | None, gpus: int | None, nodes: int | None) -> None:
    """Create a tenant, with its initial quota if given; SLUG is lower-case letters,
    digits and '-'. Tenant and quota are created together, or neither."""
    who = cli_principal()
    try:
        with unit_of_work(open_sessions(create=True)) as session:
            created = tenant_db.create_tenant(session, who, slug, name)
            if gpus is not None or nodes is not None:
                quota_db.set_quota(
                    session, who, quota_db.QuotaInput(created.slug, gpus=gpus, nodes=nodes)
                )
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
