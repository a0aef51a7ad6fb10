"""``gpuinv``: run the service, migrate, import, list, and manage tokens and tenants.

Commands that change data talk to the database directly (``GPUINV_DATABASE_URL``), as the
operator at the server's shell; they are audited as ``cli:<user>``.

This module is only the ``main`` group and the list of what it holds, so that the whole
command line can be read here at a glance: each group or command lives in its own module
beside this one, and is added below by name (no discovery, no registration on import).
"""

from __future__ import annotations

import click

from api import __version__
from api.cli.allocations import match_command, release_command
from api.cli.database import open_database
from api.cli.inventory import devices, import_command
from api.cli.maintenance import backup_command, db, restore_command
from api.cli.profiles import profile
from api.cli.serve import serve
from api.cli.tenants import tenant
from api.cli.tokens import token

# The one place the service's code reaches into the workers: their CLI commands (allowed by
# the import-linter contract for api.cli itself, so these two imports stay in this module).
# The sync's command is given the database opener, so that sync.cli never imports api.cli.
from iac.install import terraform_command
from sync.cli import sync_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpuinv")
def main() -> None:
    """gpu-inventory: the inventory and matchmaking service for GPU infrastructure.

    The database is GPUINV_DATABASE_URL (sqlite:///path.db or postgresql://user@host/db);
    default: gpuinv.db in the working directory. Start with `gpuinv serve --demo`.
    """


main.add_command(db)
main.add_command(backup_command)
main.add_command(restore_command)
main.add_command(import_command)
main.add_command(devices)
main.add_command(token)
main.add_command(tenant)
main.add_command(match_command)
main.add_command(release_command)
main.add_command(profile)
main.add_command(serve)
main.add_command(sync_command(open_database))
main.add_command(terraform_command)
