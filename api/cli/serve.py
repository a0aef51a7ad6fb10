"""``gpuinv serve``: the service, the lines that say how it is configured, and the demo."""

from __future__ import annotations

import json
import os
import secrets
import tempfile

import click
from sqlalchemy.orm import Session, sessionmaker

from api.cli.database import Database
from api.db import tenant as tenant_db
from api.db import token as token_db
from api.db.inventory_import import import_batch
from api.db.session import session_factory, unit_of_work
from api.domain.access import Principal, cli_principal
from api.settings import Settings


@click.command()
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
    database = Database()
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

    from sqlalchemy import select

    from api.db import audit
    from api.db.models import ApiTokenRow

    earlier = session.scalar(
        select(ApiTokenRow)
        .where(
            ApiTokenRow.name == _DEMO_TOKEN,
            ApiTokenRow.role == "platform-admin",
            ApiTokenRow.tenant_id.is_(None),
            ApiTokenRow.revoked_at.is_(None),
        )
        .order_by(ApiTokenRow.created_at.desc())
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
