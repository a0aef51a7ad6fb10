"""``gpuinv profile save | list``: saved compute profiles, so that ``match --profile NAME``
and the API's match can name a shape of machine instead of repeating its labels."""

from __future__ import annotations

import json
from pathlib import Path

import click

from api.cli.database import open_sessions
from api.cli.output import fail, print_table
from api.db import tenant as tenant_db
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.errors import DomainError


@click.group()
def profile() -> None:
    """Saved compute profiles: an inventory type and its filters, by name."""


@profile.command("save")
@click.argument("name")
@click.argument("labels_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def profile_save(name: str, labels_file: Path) -> None:
    """Save NAME with the labels in LABELS_FILE (a JSON object of the two labels)."""
    from api.db.profile import save_profile

    try:
        labels = json.loads(labels_file.read_text())
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{labels_file}: not valid JSON ({exc.msg})") from None
    try:
        with unit_of_work(open_sessions(create=True)) as session:
            saved = save_profile(session, cli_principal(), name, labels)
    except DomainError as exc:
        fail(exc)
    click.echo(f"saved profile {saved.name!r} ({saved.inventory_type})")


@profile.command("list")
def profile_list() -> None:
    """Saved profiles and their inventory types."""
    from api.db.profile import list_profiles

    with open_sessions(create=False)() as session:
        saved = list_profiles(session, cli_principal())
        tenants = {t.id: t.slug for t in tenant_db.list_tenants(session, cli_principal())}
    print_table(
        ("name", "inventory type", "tenant"),
        [(p.name, p.inventory_type, tenants.get(p.tenant_id or "", "-")) for p in saved],
    )
