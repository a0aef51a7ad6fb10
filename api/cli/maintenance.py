"""``gpuinv db upgrade``, ``backup`` and ``restore``: the database as a whole, not its rows.

Together because they are the operator's maintenance of the database itself (its schema,
a copy of it, a new one made from a copy), each opening it by the rules of
:mod:`api.cli.database`. ``backup`` and ``restore`` stay top-level commands, as documented.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from api.cli.database import Database, open_engine
from api.cli.output import err


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create the database or migrate it to the newest schema (safe to repeat)."""
    database = Database()
    _, created = database.open(create=True)
    said = "created the database {} at" if created else "the database {} is at"
    click.echo(said.format(database.shown) + " the newest schema", err=True)


@click.command("backup")
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


@click.command("restore")
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
