"""The database the CLI works on (GPUINV_DATABASE_URL), opened or refused in one line.

A command either creates it when it is not there (serve, db upgrade, restore and the
commands that add data: import, token / tenant create, profile save, sync), saying so in one
line, or refuses to invent an empty one and names the URL it looked at (devices, lists,
match, release, revoke, backup): an empty `gpuinv.db` made in the wrong directory would
otherwise answer "no devices" as if that were true.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import click
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from api.db.session import make_engine, redact_url, session_factory, upgrade_to_head
from api.settings import Settings

_NO_DATABASE = (
    "run `gpuinv db upgrade` to create it, `gpuinv serve --demo` for one with a sample fleet, "
    "or set GPUINV_DATABASE_URL to yours"
)
_URL_FORMS = "use sqlite:///path.db or postgresql://user:password@host[:port]/db"


class Database:
    """GPUINV_DATABASE_URL, opened or refused with one line naming it without its password.
    ``settings``: the settings already read (default: the environment's)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.url = (settings or Settings.database_only()).database_url
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


def open_engine(
    create: bool,
    migrate: bool = True,
    say_created: bool = True,
    settings: Settings | None = None,
) -> Engine:
    """Open the database (see Database); a newly created one is said on stderr, unless the
    command says where its result went itself (restore)."""
    database = Database(settings)
    engine, created = database.open(create, migrate)
    if created and say_created:
        click.echo(f"created a new database at {database.shown}", err=True)
    return engine


def open_database(settings: Settings, create: bool = True) -> sessionmaker[Session]:
    """Sessions on the settings' database at the newest schema. ``create``: make it if it
    does not exist; else refuse it, naming the URL. `gpuinv sync` is given this one."""
    return session_factory(open_engine(create, settings=settings))


def open_sessions(create: bool = True) -> sessionmaker[Session]:
    """``open_database`` with the environment's settings, for commands that read no other."""
    return open_database(Settings.database_only(), create)
