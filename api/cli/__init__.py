"""``gpuinv``: run the service, migrate, import, list, and manage tokens and tenants.

Commands that change data talk to the database directly (``GPUINV_DATABASE_URL``), as the
operator at the server's shell; they are audited as ``cli:<user>``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api import __version__
from api.cli.database import Database, open_engine, open_sessions
from api.cli.output import print_funnel, print_table
from api.cli.serve import serve
from api.db import device as device_db
from api.db import tenant as tenant_db
from api.db import token as token_db
from api.db.inventory_import import import_batch, refresh_statistics
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.errors import DomainError
from api.domain.inventory_import import parse_import

err = Console(stderr=True)


def _fail(exc: DomainError) -> None:
    message = f"{exc.code}: {exc.message}"
    for problem in exc.extensions.get("errors", [])[1:20]:
        where = f"{problem.get('section', '')} row {problem['row']}".strip()
        message += f"\n  {where}, {problem['field']}: {problem['message']}"
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpuinv")
def main() -> None:
    """gpu-inventory: the inventory and matchmaking service for GPU infrastructure.

    The database is GPUINV_DATABASE_URL (sqlite:///path.db or postgresql://user@host/db);
    default: gpuinv.db in the working directory. Start with `gpuinv serve --demo`.
    """


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create the database or migrate it to the newest schema (safe to repeat)."""
    database = Database()
    _, created = database.open(create=True)
    said = "created the database {} at" if created else "the database {} is at"
    click.echo(said.format(database.shown) + " the newest schema", err=True)


@main.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(file: Path) -> None:
    """Write the whole database to FILE (gzip'd JSON lines): the inventory, profiles,
    allocations, tenants, tokens, the audit log and the sync state, from one snapshot.
    The service may keep running. Restore with `gpuinv restore FILE`."""
    from api.db import backup

    engine = open_engine(create=False, migrate=False)
    started = time.perf_counter()
    try:
        with err.status("backing up") as status:
            written = backup.backup(
                engine, file, lambda table, n: status.update(f"backing up {table}: {n:,} rows")
            )
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    _said_rows("wrote", written.total, len(written.rows), f"to {file}", started)
    if written.longest > backup.MAX_LINE:  # say so now, not when the restore is needed
        click.echo(
            f"warning: its longest line is {written.longest / 2**20:.1f} MiB; restore it "
            f"with --max-line-mib {-(-written.longest // 2**20)} or more",
            err=True,
        )


@main.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--max-line-mib",
    type=click.IntRange(min=1),
    default=None,
    help="The longest line to read, in MiB (default 4); memory use is bounded by it.",
)
def restore_command(file: Path, max_line_mib: int | None) -> None:
    """Restore FILE (from `gpuinv backup`) into an empty database at the newest schema.
    The file is checked whole first, every value against its column's type and the
    schema's constraints, in a scratch database under TMPDIR: a file cut short, damaged,
    edited or from a newer gpuinv is refused with its first fault and nothing is written.
    The database must be empty (a new one)."""
    from api.db import backup

    limit = max_line_mib * 2**20 if max_line_mib else backup.MAX_LINE
    # a new one, which restore migrates; its last line says where the rows went
    engine = open_engine(create=True, migrate=False, say_created=False)
    started = time.perf_counter()
    try:
        with err.status("checking the file") as status:
            plan = backup.restore(engine, file, status.update, max_line=limit)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    _said_rows("restored", plan.total, len(plan.rows), f"from {file}", started)


def _said_rows(verb: str, rows: int, tables: int, where: str, started: float) -> None:
    """The closing line of backup and restore: how much, how fast (bench/ops.py reads it)."""
    seconds = time.perf_counter() - started
    click.echo(
        f"{verb} {rows:,} rows of {tables} tables {where} in {seconds:.1f} s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s)",
        err=True,
    )


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default=None,
    help="Default: from the file's extension.",
)
def import_command(file: Path, fmt: str | None) -> None:
    """Upsert the items of FILE (JSON or CSV), all or nothing.

    JSON: {"devices": [...], "vms": [...], "switches": [...], "infinibands": [...]} of item
    documents. CSV: one row per item, a `kind` column (default baremetal), GPUs as gpuCount,
    gpuVendor, gpuModel, gpuMemoryMB and tags as tags.<key> columns.
    """
    fmt = fmt or file.suffix.lower().lstrip(".")
    if fmt not in ("json", "csv"):
        raise click.UsageError(f"cannot tell the format of {file.name!r}; pass --format")
    sessions = open_sessions(create=True)
    try:
        batch = parse_import(fmt, file.read_text(encoding="utf-8-sig"))
        with Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("import", total=len(batch))
            with unit_of_work(sessions) as session:
                counts = import_batch(
                    session, cli_principal(), batch, lambda n: progress.advance(task, n)
                )
            with sessions() as session:
                refresh_statistics(session, counts)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"created {counts.created}, updated {counts.updated}, unchanged {counts.unchanged}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Device documents as a JSON list.")
@click.option("--status", multiple=True, help="Only these statuses (repeatable).")
@click.option("--site", multiple=True, help="Only these sites (repeatable).")
@click.option("--vms", is_flag=True, help="List VMs instead of physical devices.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
def devices(
    as_json: bool, status: tuple[str, ...], site: tuple[str, ...], vms: bool, limit: int
) -> None:
    """List devices as a table (or --json documents)."""
    who = cli_principal()
    spec = device_db.DeviceFilter(
        kinds=["vm" if vms else "baremetal"],
        statuses=list(status) or None,
        sites=list(site) or None,
    )
    with open_sessions(create=False)() as session:
        page = device_db.list_devices(session, who, spec, "hostname", False, limit, None)
        docs = device_db.documents(session, page.rows)
    if as_json:
        click.echo(json.dumps(docs, indent=2))
        return
    print_table(
        ("hostname", "status", "site", "model", "GPUs", "free", "tenant"),
        [
            (
                doc["hostname"],
                doc["status"],
                doc["site"] or "-",
                doc["model"] or "-",
                f"{doc['totalgpus']} x {doc['gpus'][0]['modelNo'] if doc['gpus'] else '-'}",
                str(row.free_gpus),
                doc["tenant"] or "-",
            )
            for doc, row in zip(docs, page.rows, strict=True)
        ],
    )
    if page.has_next:
        err.print(f"(first {limit} shown; raise --limit for more)")


@main.group()
def token() -> None:
    """Bearer tokens for the API."""


_TTL = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _ttl(_ctx: Any, _param: Any, value: str | None) -> timedelta | None:
    if value is None:
        return None
    match = _TTL.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(
            f"{value!r}: use a positive number and a unit, e.g. 90m, 12h, 30d or 2w"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@token.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["platform-admin", "partner-admin", "provisioner", "viewer"]),
    help="What the token may do.",
)
@click.option("--tenant", help="Tenant slug (required for partner-admin; scopes the others).")
@click.option("--name", help="A label shown in `token list` and the audit log.")
@click.option("--ttl", callback=_ttl, help="Expire after this long, e.g. 12h, 30d, 2w.")
def token_create(role: str, tenant: str | None, name: str | None, ttl: timedelta | None) -> None:
    """Create a token and print it (alone, on stdout). It is shown only this once."""
    try:
        with unit_of_work(open_sessions(create=True)) as session:
            _, secret = token_db.create_token(session, cli_principal(), role, tenant, name, ttl)
    except DomainError as exc:
        _fail(exc)
    click.echo(secret)


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json: bool) -> None:
    """Tokens with their role, tenant, expiry and revocation (never the secret)."""
    with open_sessions(create=False)() as session:
        rows = token_db.list_tokens(session)
    records = [
        {
            "id": t.id,
            "name": t.name,
            "role": t.role,
            "tenant": slug,
            "hint": f"…{t.hint}",
            "createdAt": t.created_at.isoformat(),
            "expiresAt": t.expires_at.isoformat() if t.expires_at else None,
            "revokedAt": t.revoked_at.isoformat() if t.revoked_at else None,
        }
        for t, slug in rows
    ]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    print_table(
        ("id", "name", "role", "tenant", "secret", "expires", "revoked"),
        [
            (
                r["id"][:8],
                r["name"],
                r["role"],
                r["tenant"] or "-",
                r["hint"],
                (r["expiresAt"] or "never")[:19],
                (r["revokedAt"] or "-")[:19],
            )
            for r in records
        ],
    )


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token by id (or a unique id prefix of 6+ characters, as `token list` shows)."""
    try:
        with unit_of_work(open_sessions(create=False)) as session:
            revoked = token_db.revoke_token(session, cli_principal(), token_id)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"revoked {revoked.id} ({revoked.name})", err=True)


@main.group()
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
        _fail(exc)
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


@main.command("match")
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
@click.option("--ttl", callback=_ttl, help="Lease: release automatically after, e.g. 8h.")
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

    from api.db.allocation import MatchInput, match_device
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
        _fail(exc)
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


@main.command("release")
@click.argument("environment")
@click.option("--tenant", help="The tenant the environment was matched for.")
def release_command(environment: str, tenant: str | None) -> None:
    """Free everything ENVIRONMENT's allocation holds (safe to repeat)."""
    from api.db.allocation import release

    try:
        with unit_of_work(open_sessions(create=False)) as session:
            released = release(session, cli_principal(), environment, tenant)
    except DomainError as exc:
        _fail(exc)
    if released is None:
        click.echo(f"environment {environment!r} holds no allocation", err=True)
    else:
        click.echo(f"released allocation {released.id} of {environment!r}")


@main.group()
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
        _fail(exc)
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


def _add_commands() -> None:
    # serve, and the one place the service's code reaches into the workers: their CLI commands.
    from iac.install import terraform_command
    from sync.cli import sync_command

    main.add_command(serve)
    main.add_command(sync_command)
    main.add_command(terraform_command)


_add_commands()
