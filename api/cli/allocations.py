"""``gpuinv match`` and ``release``: take devices for an environment and give them back.

Together because a release undoes exactly what a match made, keyed by the same
environment name (the idempotency key). ``match`` prints the funnel (how many devices each
filter left) whether it allocates, dry-runs or finds nothing, so that an operator can see
which filter emptied the list.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import click
from rich.console import Console

from api.cli import params
from api.cli.database import open_engine, open_sessions
from api.cli.output import err, fail, print_funnel
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.errors import DomainError


@click.command("match")
@click.option("--profile", "profile_name", help="A saved profile's name.")
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Inline labels instead: a JSON file with the two labels.",
)
@click.option(
    "--var",
    "variables",
    multiple=True,
    metavar="NAME=VALUE",
    help="A variable (repeatable); a JSON array value means any of them.",
)
@click.option("--env", "environment", help="The idempotency key (default: cli-<random>).")
@click.option("--tenant", help="Whose inventory to match (default: all).")
@click.option("--project", help="Recorded on the allocation.")
@click.option("--ttl", callback=params.ttl, help="Lease: release automatically after, e.g. 8h.")
@click.option("--dry-run", is_flag=True, help="Show what would be chosen; allocate nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def match_command(
    profile_name: str | None,
    labels_file: Path | None,
    variables: tuple[str, ...],
    environment: str | None,
    tenant: str | None,
    project: str | None,
    ttl: timedelta | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Find devices for an environment and allocate them, printing the funnel.

    Example: gpuinv match --profile h100-india --var gputype=NVIDIA --var gpu=8
    """
    import uuid

    from api.db.allocation import match_device
    from api.db.allocation_request import MatchInput
    from api.db.candidates import LiveIndex

    parsed: dict[str, str] = {}
    for item in variables:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r}: use NAME=VALUE", param_hint="--var")
        parsed[name.strip()] = value
    labels = json.loads(labels_file.read_text()) if labels_file else None
    given = MatchInput(
        environment=environment or f"cli-{uuid.uuid4().hex[:12]}",
        variables=parsed,
        profile=profile_name,
        labels=labels,
        dry_run=dry_run,
        tenant=tenant,
        project=project,
        ttl_seconds=int(ttl.total_seconds()) if ttl else None,
    )
    engine = open_engine(create=False)
    try:
        result = match_device(engine, cli_principal(), LiveIndex(), given)
    except DomainError as exc:
        if "explanation" in exc.extensions:
            print_funnel(exc.extensions["explanation"], err)
        fail(exc)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "allocation": result.allocation.id if result.allocation else None,
                    "environment": given.environment,
                    "deviceDetails": result.device_details,
                    "explanation": result.explanation,
                },
                indent=2,
            )
        )
        return
    print_funnel(result.explanation, Console())
    details = result.device_details
    hosts = ", ".join(d["hostname"] for d in (details if isinstance(details, list) else [details]))
    if result.allocation is None:
        click.echo(f"Would allocate {hosts} (dry run: nothing allocated)")
    else:
        click.echo(
            f"Allocated {hosts} to environment {given.environment!r} "
            f"(allocation {result.allocation.id})"
        )


@click.command("release")
@click.argument("environment")
@click.option("--tenant", help="The tenant the environment was matched for.")
def release_command(environment: str, tenant: str | None) -> None:
    """Free everything ENVIRONMENT's allocation holds (safe to repeat)."""
    from api.db.release import release

    try:
        with unit_of_work(open_sessions(create=False)) as session:
            released = release(session, cli_principal(), environment, tenant)
    except DomainError as exc:
        fail(exc)
    if released is None:
        click.echo(f"environment {environment!r} holds no allocation", err=True)
    else:
        click.echo(f"released allocation {released.id} of {environment!r}")
