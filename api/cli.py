"""``gpuinv``: run the service, migrate, import, list, and manage tokens and tenants.

Commands that change data talk to the database directly (``GPUINV_DATABASE_URL``), as the
operator at the server's shell; they are audited as ``cli:<user>``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from api import __version__
from api.db import device as device_db
from api.db import tenant as tenant_db
from api.db import token as token_db
from api.db.inventory_import import import_batch, refresh_statistics
from api.db.session import (
    make_engine,
    redact_url,
    session_factory,
    unit_of_work,
    upgrade_to_head,
)
from api.domain.access import Principal, cli_principal
from api.domain.errors import DomainError
from api.domain.inventory_import import parse_import
from api.settings import Settings

err = Console(stderr=True)


# The database the CLI works on (GPUINV_DATABASE_URL). A command either creates it when it
# is not there (serve, db upgrade, restore and the commands that add data: import, token /
# tenant create, profile save, sync), saying so in one line, or refuses to invent an empty
# one and names the URL it looked at (devices, lists, match, release, revoke, backup).

_NO_DATABASE = (
    "run `gpuinv db upgrade` to create it, `gpuinv serve --demo` for one with a sample fleet, "
    "or set GPUINV_DATABASE_URL to yours"
)
_URL_FORMS = "use sqlite:///path.db or postgresql://user:password@host[:port]/db"


class _Database:
    """GPUINV_DATABASE_URL, opened or refused with one line naming it without its password."""

    def __init__(self) -> None:
        self.url = Settings.from_env().database_url
        self.shown = redact_url(self.url)
        self.path: Path | None = None  # a SQLite database's file
        try:
            parsed = make_url(self.url)
        except (ArgumentError, ValueError):
            return
        if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
            self.path = Path(parsed.database)
            if not self.path.is_absolute():  # relative to the working directory: say which
                self.shown += f" ({self.path.resolve()})"

    def fail(self, reason: str, verb: str = "reach") -> click.ClickException:
        return click.ClickException(f"cannot {verb} the database {self.shown}: {reason}")

    def open(self, create: bool, migrate: bool = True) -> tuple[Engine, bool]:
        """The engine and whether the database was created now. ``create``: make (and
        migrate) a database that does not exist; else refuse it."""
        engine = self._engine()
        existed = True
        if self.path is not None:
            if not self.path.parent.is_dir():
                raise self.fail(f"the directory {self.path.parent} does not exist")
            if self.path.is_dir():
                raise self.fail(f"{self.path} is a directory, not a database file")
            existed = self.path.exists()
            if not existed and not create:  # connecting would create the file: ask first
                raise click.ClickException(f"no database at {self.shown}: {_NO_DATABASE}")
        try:
            with engine.connect() as connection:
                has_schema = inspect(connection).has_table("alembic_version")
        except DBAPIError as exc:
            engine.dispose()
            raise self.fail(self._reason(exc)) from None
        if not has_schema and not create:
            raise click.ClickException(
                f"no gpuinv database at {self.shown} (it has no alembic_version table): "
                + _NO_DATABASE
            )
        if migrate:
            upgrade_to_head(engine)
        return engine, not (existed and has_schema)

    def _engine(self) -> Engine:
        if re.match(r"^[^:/@?#]*://[^/@?#]*:[^/]*@[^/]*@", self.url):
            raise self.fail("the password holds '@': write it as %40 (percent-encode it)", "use")
        if self.url.strip().rstrip("/") in ("sqlite:", "sqlite:/", "sqlite:///:memory:"):
            raise self.fail(
                f"an in-memory database would vanish with the command; {_URL_FORMS}", "use"
            )
        try:
            return make_engine(self.url)
        except ArgumentError:
            raise self.fail(f"not a database URL ({_URL_FORMS})", "use") from None
        except ValueError as exc:
            if "invalid literal for int()" in str(exc):
                raise self.fail(f"the port is not a number ({_URL_FORMS})", "use") from None
            raise self.fail(str(exc).removeprefix("GPUINV_DATABASE_URL: "), "use") from None

    def _reason(self, exc: DBAPIError) -> str:
        """What went wrong, in a few words: the driver's first line, without its preamble."""
        text = str(exc.orig if exc.orig is not None else exc).strip()
        first = text.splitlines()[0].strip() if text else type(exc).__name__
        if self.path is not None:
            if "file is not a database" in first:
                return f"{self.path} is not a SQLite database"
            if "unable to open" in first:
                return f"cannot open {self.path} ({_access(self.path)})"
        host = re.match(r"failed to resolve host '([^']*)'", first)
        if host:
            return f"unknown host {host.group(1)!r}"
        first = re.sub(r"^connection failed: ", "", first)
        first = re.sub(r"^connection to server (at|on) .*? failed: ", "", first)
        first = re.sub(r"^FATAL:\s*", "", first)
        if re.match(r'^database ".*" does not exist$', first):
            first += " (create it, e.g. with createdb, then run `gpuinv db upgrade`)"
        return first[:1].lower() + first[1:]


def _access(path: Path) -> str:
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"no permission to write in {path.parent}"
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return "no permission to read and write it"
    return "unable to open the file"


def _engine(create: bool, migrate: bool = True) -> Engine:
    """Open the database (see _Database); a newly created one is said on stderr."""
    database = _Database()
    engine, created = database.open(create, migrate)
    if created:
        click.echo(f"created a new database at {database.shown}", err=True)
    return engine


def _sessions(create: bool = True) -> sessionmaker[Session]:
    """Sessions on the database at the newest schema. ``create``: make it if it does not
    exist; else refuse it, naming the URL (sync's commands call this with the default)."""
    return session_factory(_engine(create))


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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--demo",
    is_flag=True,
    help="Load a sample fleet (about 300 GPU servers, "
    "switches, VMs, 3 tenants) and print a platform-admin token.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes (use PostgreSQL for more than one).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option(
    "--log-format",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "json", "text"]),
    help="JSON lines (one per request, with its request id), text, or auto: text on a "
    "terminal, JSON otherwise. Also GPUINV_LOG_FORMAT.",
)
@click.option(
    "--ops-address",
    metavar="HOST:PORT",
    help="Serve /healthz, /readyz and /metrics (no token) on this address instead, e.g. "
    "0.0.0.0:9100; /metrics then leaves the API's address. Also GPUINV_OPS_ADDRESS.",
)
def serve(
    host: str,
    port: int,
    demo: bool,
    workers: int,
    log_level: str,
    log_format: str,
    ops_address: str | None,
) -> None:
    """Run the GraphQL API at http://HOST:PORT/graphql (GraphiQL in a browser).

    Creates and migrates the database first, so a fresh machine needs nothing else.
    /healthz (up), /readyz (database reachable, migrations at head) and /metrics
    (Prometheus) need no token.
    """
    import uvicorn

    from api.logs import configure_logging
    from api.metrics import MULTIPROCESS_ENV

    # The workers read their settings from the environment (uvicorn starts them afresh).
    os.environ["GPUINV_LOG_LEVEL"] = log_level
    os.environ["GPUINV_LOG_FORMAT"] = os.environ.get("GPUINV_LOG_FORMAT") or log_format
    if ops_address:
        os.environ["GPUINV_OPS_ADDRESS"] = ops_address
    settings = Settings.from_env()  # refuses bad values before anything starts
    configure_logging(settings.log_level, settings.log_format)
    if workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        # Each worker counts its own requests; a scrape adds up their files here.
        os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="gpuinv-metrics-")
    database = _Database()
    engine, created = database.open(create=True)
    _say_configuration(settings, host, port, database.shown, created)
    if demo:
        token, renewed = _load_demo(session_factory(engine))
        click.echo(
            f"Demo fleet loaded. Platform-admin token (send as 'Authorization: Bearer "
            f"<token>'):\n\n  {token}\n\n"
            + (
                "(a new secret for the demo token: the one an earlier `serve --demo` printed "
                "no longer works)\n"
                if renewed
                else ""
            )
            + f"GraphiQL: {_api_url(host, port)}/graphql\n",
            err=True,
        )
        click.echo(token)
    engine.dispose()
    if settings.ops_address:
        _serve_ops_in_background(settings)
    uvicorn.run(
        "api.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_config=None,  # ours (api/logs.py), set up in each worker by the factory
        access_log=False,  # api/logs.RequestContext writes one line per request instead
    )


def _api_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _say_configuration(
    settings: Settings, host: str, port: int, database: str, created: bool
) -> None:
    """What this server talks to and answers, in a few log lines at start."""
    import logging

    log = logging.getLogger("gpuinv.serve")
    log.info("database: %s%s", database, " (created now)" if created else "")
    api = f"{_api_url(host, port)}/graphql"
    if settings.graphiql:
        log.info("GraphiQL: %s (open it in a browser; the API is the same URL)", api)
    else:
        log.info("GraphQL API: %s (GraphiQL off: GPUINV_GRAPHIQL=0)", api)
    if settings.ops_address:
        log.info(
            "ops: /healthz, /readyz and /metrics at http://%s (GPUINV_OPS_ADDRESS)",
            settings.ops_address,
        )
    else:
        log.info("ops: /healthz, /readyz and /metrics at %s (GPUINV_OPS_ADDRESS unset)", api[:-8])
    if settings.cors_origins:
        log.info("CORS: browsers may call the API from %s", ", ".join(settings.cors_origins))
    else:
        log.info("CORS: off, no other origin's pages may call the API (GPUINV_CORS_ORIGINS unset)")
    if settings.providers:
        log.info(
            "fleetCapacity: this inventory and %s (GPUINV_PROVIDERS)",
            ", ".join(f"{p.name} at {p.url}" for p in settings.providers),
        )
    else:
        log.info("fleetCapacity: this inventory only (GPUINV_PROVIDERS unset)")
    unset = [
        name
        for name, value in (
            ("NETBOX_URL", settings.netbox_url),
            ("NETBOX_TOKEN", settings.netbox_token),
        )
        if not value
    ]
    if settings.netbox_webhook_secret and not unset:
        log.info(
            "NetBox webhook: /hooks/netbox takes signed events and re-reads the changed "
            "items from %s",
            settings.netbox_url,
        )
    elif settings.netbox_webhook_secret:
        log.warning(
            "NetBox webhook: GPUINV_NETBOX_WEBHOOK_SECRET is set but %s %s not: /hooks/netbox "
            "will answer 503, since it re-reads each changed item from NetBox",
            _and(unset),
            "are" if len(unset) > 1 else "is",
        )
    else:
        log.info(
            "NetBox webhook: off, /hooks/netbox answers 503 (set %s)",
            _and(["GPUINV_NETBOX_WEBHOOK_SECRET", *unset]),
        )


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _serve_ops_in_background(settings: Settings) -> None:
    """/healthz, /readyz and /metrics on their own address, from this (the supervising)
    process: one listener whatever the number of workers."""
    import threading

    import uvicorn

    from api.app import create_ops_app

    host, _, port = settings.ops_address.rpartition(":")
    config = uvicorn.Config(
        create_ops_app(settings),
        host=host.strip("[]"),
        port=int(port),
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="gpuinv-ops", daemon=True).start()


def _load_demo(sessions: sessionmaker[Session]) -> tuple[str, bool]:
    """Load the sample fleet (again: everything is upserted, nothing duplicated) and
    return the demo token's secret, and whether it renewed an earlier demo token's."""
    from api.db.profile import list_profiles, save_profile
    from api.demo import PROFILES, PROJECTS, TENANTS, demo_fleet
    from api.domain.inventory_import import parse_json_import

    who = cli_principal()
    with unit_of_work(sessions) as session:
        existing = {t.slug for t in tenant_db.list_tenants(session, who)}
        for slug, name in TENANTS:
            if slug not in existing:
                tenant_db.create_tenant(session, who, slug, name)
                for project in PROJECTS.get(slug, []):
                    tenant_db.create_project(session, who, slug, project, None)
        import_batch(session, who, parse_json_import(json.dumps(demo_fleet())))
        saved = {p.name: p.labels for p in list_profiles(session, who) if p.tenant_id is None}
        for name, labels in PROFILES.items():
            if saved.get(name) != labels:
                save_profile(session, who, name, labels)
        return _demo_token(session, who)


def _demo_token(session: Session, who: Principal) -> tuple[str, bool]:
    """The demo's one platform-admin token: created the first time; on a later start the
    same token gets a new secret (only its hash is stored, so the old secret cannot be
    shown again), so starts never pile up live admin tokens."""
    import secrets

    from sqlalchemy import select

    from api.db import audit
    from api.db.models import ApiToken

    earlier = session.scalar(
        select(ApiToken)
        .where(
            ApiToken.name == _DEMO_TOKEN,
            ApiToken.role == "platform-admin",
            ApiToken.tenant_id.is_(None),
            ApiToken.revoked_at.is_(None),
        )
        .order_by(ApiToken.created_at.desc())
        .limit(1)
    )
    if earlier is None:
        _, secret = token_db.create_token(session, who, "platform-admin", None, _DEMO_TOKEN, None)
        return secret, False
    secret = token_db.PREFIX + secrets.token_urlsafe(32)
    earlier.secret_hash = token_db.hash_secret(secret)
    earlier.hint = secret[-4:]
    earlier.expires_at = None
    session.flush()
    audit.record(session, who, "renew", "token", earlier.id, earlier.name, None)
    return secret, True


_DEMO_TOKEN = "demo"


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create the database or migrate it to the newest schema (safe to repeat)."""
    database = _Database()
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

    engine = _engine(create=False, migrate=False)
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
    engine = _engine(create=True, migrate=False)  # a new one: restore migrates it
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
    sessions = _sessions(create=True)
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
    with _sessions(create=False)() as session:
        page = device_db.list_devices(session, who, spec, "hostname", False, limit, None)
        docs = device_db.documents(session, page.rows)
    if as_json:
        click.echo(json.dumps(docs, indent=2))
        return
    _print_table(
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
        with unit_of_work(_sessions(create=True)) as session:
            _, secret = token_db.create_token(session, cli_principal(), role, tenant, name, ttl)
    except DomainError as exc:
        _fail(exc)
    click.echo(secret)


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json: bool) -> None:
    """Tokens with their role, tenant, expiry and revocation (never the secret)."""
    with _sessions(create=False)() as session:
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
    _print_table(
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
        with unit_of_work(_sessions(create=False)) as session:
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
        with unit_of_work(_sessions(create=True)) as session:
            created = tenant_db.create_tenant(session, cli_principal(), slug, name)
    except DomainError as exc:
        _fail(exc)
    click.echo(created.slug)


@tenant.command("list")
@click.option("--json", "as_json", is_flag=True)
def tenant_list(as_json: bool) -> None:
    """All tenants."""
    with _sessions(create=False)() as session:
        tenants = tenant_db.list_tenants(session, cli_principal())
    if as_json:
        click.echo(
            json.dumps([{"id": t.id, "slug": t.slug, "name": t.name} for t in tenants], indent=2)
        )
        return
    _print_table(("slug", "name"), [(t.slug, t.name) for t in tenants])


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
    sessions = _sessions(create=False)
    try:
        with sessions() as session:
            result = match_device(session, cli_principal(), LiveIndex(), given)
    except DomainError as exc:
        if "explanation" in exc.extensions:
            _print_funnel(exc.extensions["explanation"], err)
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
    _print_funnel(result.explanation, Console())
    details = result.device_details
    hosts = ", ".join(d["hostname"] for d in (details if isinstance(details, list) else [details]))
    if result.allocation is None:
        click.echo(f"Would allocate {hosts} (dry run: nothing allocated)")
    else:
        click.echo(
            f"Allocated {hosts} to environment {given.environment!r} "
            f"(allocation {result.allocation.id})"
        )


def _print_funnel(explanation: dict[str, Any], console: Console) -> None:
    _print_table(
        ("filter", "entered", "left", "note"),
        [
            (step["filter"], str(step["entered"]), str(step["left"]), step["note"] or "")
            for step in explanation["steps"]
        ],
        console,
        box=None,
    )
    if explanation.get("unusedVariables"):
        console.print(
            f"variables no filter reads: {', '.join(explanation['unusedVariables'])}",
            soft_wrap=True,  # whole on a pipe, like the table
            markup=False,
        )


def _print_table(
    columns: tuple[str, ...],
    rows: list[tuple[str, ...]],
    console: Console | None = None,
    **table_options: Any,
) -> None:
    """A rich table on a terminal; otherwise (a pipe, a file) plain columns at full width,
    never cut, with upper-case headings and no box or colour, as ``kubectl get`` prints."""
    console = console or Console()
    if console.is_terminal:
        table = Table(*columns, **table_options)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    lines = [tuple(c.upper().replace(" ", "_") for c in columns), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        text = "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        console.file.write(text.rstrip() + "\n")
    console.file.flush()


@main.command("release")
@click.argument("environment")
@click.option("--tenant", help="The tenant the environment was matched for.")
def release_command(environment: str, tenant: str | None) -> None:
    """Free everything ENVIRONMENT's allocation holds (safe to repeat)."""
    from api.db.allocation import release

    try:
        with unit_of_work(_sessions(create=False)) as session:
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
        with unit_of_work(_sessions(create=True)) as session:
            saved = save_profile(session, cli_principal(), name, labels)
    except DomainError as exc:
        _fail(exc)
    click.echo(f"saved profile {saved.name!r} ({saved.inventory_type})")


@profile.command("list")
def profile_list() -> None:
    """Saved profiles and their inventory types."""
    from api.db.profile import list_profiles

    with _sessions(create=False)() as session:
        saved = list_profiles(session, cli_principal())
        tenants = {t.id: t.slug for t in tenant_db.list_tenants(session, cli_principal())}
    _print_table(
        ("name", "inventory type", "tenant"),
        [(p.name, p.inventory_type, tenants.get(p.tenant_id or "", "-")) for p in saved],
    )


def _add_sync_command() -> None:
    # The one place the service's code reaches into the workers: their CLI commands.
    from iac.install import terraform_command
    from sync.cli import sync_command

    main.add_command(sync_command)
    main.add_command(terraform_command)


_add_sync_command()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
