"""What a backup holds, shared by both directions so that a backup and its restore agree:
every table but the derived ones, parents before children; the schema (Alembic revision)
it was written at, which must be one this gpuinv knows; and how many rows move at once."""

from __future__ import annotations

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Table

from api.db.base import Base
from api.db.session import alembic_config

SKIPPED = {"device_change"}  # derived: the triggers rebuild it
NOT_DATA = SKIPPED | {"alembic_version"}

# Rows are read and written in batches of at most BATCH_ROWS rows and BATCH_BYTES of source
# text, so a batch of big rows costs no more memory than a batch of small ones.
BATCH_ROWS = 5000
BATCH_BYTES = 2**20


def tables() -> list[Table]:
    """Every table worth keeping, parents before children."""
    return [t for t in Base.metadata.sorted_tables if t.name not in SKIPPED]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def known_revisions(engine: Engine) -> list[str]:
    """Every schema this gpuinv knows, oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    return [s.revision for s in reversed(list(scripts.walk_revisions()))]
