"""``gpuinv token create | list | revoke``: the API's bearer tokens, from the server's shell.

The operator's way in before any token exists (the first platform-admin token is made
here), and the way out for a leaked one without a working token of one's own.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click

from api.cli import params
from api.cli.database import open_sessions
from api.cli.output import fail, print_table
from api.db import token as token_db
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.domain.errors import DomainError


@click.group()
def token() -> None:
    """Bearer tokens for the API."""


@token.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["platform-admin", "partner-admin", "provisioner", "viewer"]),
    help="What the token may do.",
)
@click.option("--tenant", help="Tenant slug (required for partner-admin; scopes the others).")
@click.option("--name", help="A label shown in `token list` and the audit log.")
@click.option("--ttl", callback=params.ttl, help="Expire after this long, e.g. 12h, 30d, 2w.")
def token_create(role: str, tenant: str | None, name: str | None, ttl: timedelta | None) -> None:
    """Create a token and print it (alone, on stdout). It is shown only this once."""
    try:
        with unit_of_work(open_sessions(create=True)) as session:
            _, secret = token_db.create_token(session, cli_principal(), role, tenant, name, ttl)
    except DomainError as exc:
        fail(exc)
    click.echo(secret)


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json: bool) -> None:
    """Tokens with their role, tenant, expiry and revocation (never the secret)."""
    with open_sessions(create=False)() as session:
        rows = token_db.list_tokens(session)
    records: list[dict[str, Any]] = [
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
        fail(exc)
    click.echo(f"revoked {revoked.id} ({revoked.name})", err=True)
