"""``gpuinv import`` and ``devices``: the inventory's items, put in from a file and listed.

Together because they are the two ends of the same rows: what an import writes is what
``devices`` shows, through the same ``api.db`` functions the API uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.database import open_sessions
from api.cli.output import err, fail, print_table
from api.db import device as device_db
from api.db.inventory_import import import_batch, refresh_statistics
from api.db.session import engine_of, unit_of_work
from api.domain.access import cli_principal
from api.domain.errors import DomainError
from api.domain.inventory_import import parse_import


@click.command("import")
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
            refresh_statistics(engine_of(sessions), counts)
    except DomainError as exc:
        fail(exc)
    click.echo(f"created {counts.created}, updated {counts.updated}, unchanged {counts.unchanged}")


@click.command()
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
