"""``gpuinv sync``: reconcile the inventory with NetBox (the mapping: sync/README.md).

load (pynetbox) -> translate (pure) -> diff (pure) -> apply (one transaction). ``--diff``,
the default, prints the diff and changes nothing; ``--apply`` applies it once; ``--watch``
keeps doing so, and only the worker holding the lease applies.

Configured by ``Settings`` (api/settings.py), read once: NETBOX_URL and NETBOX_TOKEN,
GPUINV_SYNC_MAPPING (``--mapping`` wins over it), GPUINV_NETBOX_WEBHOOK_SECRET, and the
database, which the CLI that mounts this command opens: ``sync_command`` is given its
``open_database``, so this module does not import the CLI (which imports it).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pynetbox
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.db.base import utcnow
from api.db.inventory_import import refresh_statistics
from api.db.leader_lease import give_up_lead, take_lead
from api.db.session import engine_of, unit_of_work
from api.domain.errors import DomainError
from api.settings import Settings
from sync import reconcile
from sync.diff import CREATE, FLAG, RETIRE, UPDATE, Change, Held, diff
from sync.mapping import Mapping, MappingError, load_mapping
from sync.netbox import NetBoxUnavailable, connect, load
from sync.translate import Note, translate
from sync.webhook import setup_webhook

err = Console(stderr=True)
_MARK = {CREATE: "+", UPDATE: "~", RETIRE: "-", FLAG: "!"}
# Sessions on the database of these settings, created and migrated if need be.
OpenDatabase = Callable[[Settings], sessionmaker[Session]]


@dataclass(frozen=True)
class Sync:
    """What a sync works on: the inventory's database, NetBox, and the mapping between."""

    sessions: sessionmaker[Session]
    netbox: pynetbox.api
    mapping: Mapping


def _netbox(settings: Settings) -> pynetbox.api:
    url, token = settings.netbox_url, settings.netbox_token
    missing = [name for name, value in (("NETBOX_URL", url), ("NETBOX_TOKEN", token)) if not value]
    if missing:
        raise click.UsageError(f"set {' and '.join(missing)} (where NetBox is, and an API token)")
    return connect(url, token)


def _mapping(mapping_file: Path | None, settings: Settings) -> Mapping:
    """--mapping's file, else GPUINV_SYNC_MAPPING's (as the service's webhook reads it)."""
    try:
        if mapping_file:
            return load_mapping(mapping_file)
        return load_mapping(settings.sync_mapping_file, "GPUINV_SYNC_MAPPING")
    except MappingError as exc:
        raise click.UsageError(str(exc)) from None


def plan(sync: Sync, quiet: bool = False) -> tuple[list[Change], list[Note], list[Held]]:
    """Read NetBox and the inventory; the changes an apply would make."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
        disable=quiet,
    ) as progress:
        task = progress.add_task("reading NetBox")
        snapshot = load(
            sync.netbox,
            sync.mapping,
            step=lambda name: progress.update(task, description=f"reading NetBox: {name}"),
        )
        progress.update(task, description="reading the inventory")
        desired = translate(snapshot, sync.mapping)
        with sync.sessions() as session:
            current = reconcile.holdings(session)
    notes = [*desired.notes]
    return diff(desired, current, notes), notes, current


def describe(change: Change) -> str:
    head = f"{_MARK[change.action]} {change.action} {change.kind} {change.key}"
    if change.netbox_id is not None:
        head += f" (netbox #{change.netbox_id})"
    if change.code:
        head += f": {change.code}"
    if change.action == CREATE:
        return head
    details = ", ".join(
        f"{name} {_short(old)} → {_short(new)}" for name, (old, new) in change.fields.items()
    )
    return f"{head}: {details}" if details else head


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def run_apply(sync: Sync, allow_mass_retire: bool, quiet: bool) -> dict[str, int]:
    started = utcnow()
    sessions = sync.sessions
    try:
        changes, notes, current = plan(sync, quiet)
        reconcile.check_mass_retire(changes, current, allow_mass_retire)
        with Progress(
            TextColumn("applying"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            disable=quiet or not changes,
        ) as progress:
            task = progress.add_task("apply", total=len(changes))
            with unit_of_work(sessions) as session:
                applied = reconcile.apply(session, changes, lambda n: progress.advance(task, n))
            # after the commit: plans for a fleet just loaded
            refresh_statistics(engine_of(sessions), applied.imported)
    except (NetBoxUnavailable, reconcile.SyncError, DomainError) as exc:
        reconcile.record_outcome(sessions, started, error=str(exc))
        raise click.ClickException(str(exc)) from None
    summary = {action: applied.counts.get(action, 0) for action in (CREATE, UPDATE, RETIRE, FLAG)}
    summary["notes"] = len(notes)
    reconcile.record_outcome(sessions, started, summary=summary)
    for note in notes:
        click.echo(f"note: {note.kind} {note.key}: {note.message}", err=True)
    return summary


def sync_command(open_database: OpenDatabase) -> click.Command:
    """`gpuinv sync`, on the database ``open_database`` opens (the CLI gives its own)."""

    @click.command("sync")
    @click.option(
        "--diff",
        "mode",
        flag_value="diff",
        default=True,
        help="Print what an apply would change; change nothing (the default).",
    )
    @click.option("--apply", "mode", flag_value="apply", help="Apply the diff once.")
    @click.option(
        "--watch",
        "mode",
        flag_value="watch",
        help="Apply, then again every --interval "
        "seconds; only one worker (the lease holder) applies at a time.",
    )
    @click.option("--json", "as_json", is_flag=True, help="--diff as a JSON list of changes.")
    @click.option(
        "--mapping",
        "mapping_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="YAML file overriding the default mapping (which NetBox roles and custom fields "
        "are read): keys and defaults in sync/README.md, an example in "
        "sync/mapping.example.yaml. Default: the file GPUINV_SYNC_MAPPING names, if set.",
    )
    @click.option(
        "--allow-mass-retire",
        is_flag=True,
        help="Apply even when more than 10% of the synced items would be retired.",
    )
    @click.option(
        "--setup-webhook",
        "service_url",
        metavar="SERVICE_URL",
        help="Register (or update) the NetBox webhook and event rule that post changes to "
        "SERVICE_URL/hooks/netbox, signed with GPUINV_NETBOX_WEBHOOK_SECRET; then exit.",
    )
    @click.option(
        "--interval",
        default=300.0,
        show_default=True,
        type=click.FloatRange(1),
        help="--watch: seconds between syncs.",
    )
    def command(
        mode: str,
        as_json: bool,
        mapping_file: Path | None,
        allow_mass_retire: bool,
        service_url: str | None,
        interval: float,
    ) -> None:
        """Reconcile the inventory with NetBox, the source of truth for hardware.

        NetBox is NETBOX_URL with the API token NETBOX_TOKEN; the inventory is
        GPUINV_DATABASE_URL, as for `serve`. Allocations are never changed: an allocated item
        that NetBox deletes or degrades is flagged (`attention`) and changed after its release.
        """
        settings = Settings.from_env()
        mapping = _mapping(mapping_file, settings)
        if service_url:
            setup(settings, service_url)
            return
        sessions = open_database(settings)
        sync = Sync(sessions, _netbox(settings), mapping)
        if mode == "diff":
            show_diff(sync, as_json)
            return
        worker = reconcile.worker_name()
        # Renewed at every round; a crashed leader's lease lapses and another worker takes over.
        lease = timedelta(seconds=max(10.0, 3 * interval))
        if mode == "apply":
            apply_once(sync, allow_mass_retire, worker, lease)
        else:
            watch(sync, allow_mass_retire, worker, lease, interval)

    return command


def setup(settings: Settings, service_url: str) -> None:
    """--setup-webhook: NetBox's webhook and event rule, posting to the service."""
    secret = settings.netbox_webhook_secret
    if not secret:
        raise click.UsageError("set GPUINV_NETBOX_WEBHOOK_SECRET: the service checks it")
    try:
        hook_id, rule_id = setup_webhook(_netbox(settings), service_url, secret)
    except pynetbox.RequestError as exc:
        raise click.ClickException(f"NetBox refused the webhook: {exc.error}") from None
    click.echo(
        f"NetBox webhook #{hook_id} and event rule #{rule_id} post to "
        f"{service_url.rstrip('/')}/hooks/netbox"
    )


def show_diff(sync: Sync, as_json: bool) -> None:
    """--diff: what an apply would change, changing nothing."""
    try:
        changes, notes, _ = plan(sync, quiet=as_json)
    except NetBoxUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([c.as_json() for c in changes], indent=2, default=str))
        return
    for change in changes:
        click.echo(describe(change))
    for note in notes:
        click.echo(f"note: {note.kind} {note.key}: {note.message}", err=True)
    click.echo(f"{len(changes)} changes" if changes else "in step with NetBox")


def apply_once(sync: Sync, allow_mass_retire: bool, worker: str, lease: timedelta) -> None:
    if not take_lead(sync.sessions, reconcile.SOURCE, worker, lease):
        raise click.ClickException(
            "another sync worker leads (see syncState); try again when it is done"
        )
    try:
        summary = run_apply(sync, allow_mass_retire, quiet=False)
        click.echo(", ".join(f"{k} {v}" for k, v in summary.items()))
    finally:
        give_up_lead(sync.sessions, reconcile.SOURCE, worker)


def watch(
    sync: Sync, allow_mass_retire: bool, worker: str, lease: timedelta, interval: float
) -> None:
    """Sync every ``interval`` seconds while leading; otherwise wait to take over. A failed
    round (NetBox down, a refused apply) is recorded and retried; the service is not
    affected either way."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
    err.print(f"sync worker {worker}: watching NetBox every {interval:g} s")
    try:
        while True:
            try:
                leading = take_lead(sync.sessions, reconcile.SOURCE, worker, lease)
            except SQLAlchemyError as exc:
                # The database busy or away for a moment (SQLite's lock held by a worker
                # that just died, a PostgreSQL restart): not a reason to stop watching.
                problem = str(getattr(exc, "orig", exc)).splitlines()[0]
                click.echo(
                    f"could not check the lead, retrying in {interval:g} s: {problem}", err=True
                )
                leading = False
            if leading:
                try:
                    summary = run_apply(sync, allow_mass_retire, quiet=True)
                    click.echo(", ".join(f"{k} {v}" for k, v in summary.items()))
                except click.ClickException as exc:
                    click.echo(f"sync failed, retrying in {interval:g} s: {exc.message}", err=True)
                sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        give_up_lead(sync.sessions, reconcile.SOURCE, worker)
