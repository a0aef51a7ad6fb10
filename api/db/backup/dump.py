"""`gpuinv backup FILE`: every table of a database at the newest schema, written from one
consistent snapshot. The file appears under the name asked for only once it is complete,
so a backup cut short (a full disk, a killed process) is never mistaken for a good one."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select, text

from api.db.backup.contents import BATCH_ROWS, current_revision, head_revision, tables
from api.db.backup.errors import BackupError
from api.db.backup.fileformat import header, row_text, write_line
from api.db.session import session_factory


@dataclass
class Written:
    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    longest: int = 0  # bytes of the longest line: a restore refuses lines over its limit

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def backup(
    engine: Engine, path: Path, progress: Callable[[str, int], None] | None = None
) -> Written:
    """Write the database to ``path`` (gzip'd JSON lines) from one consistent snapshot."""
    revision = current_revision(engine)
    if revision != head_revision(engine):
        raise BackupError(
            f"the database is at schema {revision or 'none'}, not {head_revision(engine)}: "
            "run `gpuinv db upgrade` first"
        )
    written = Written(path)
    partial = path.with_name(path.name + ".partial")
    with session_factory(engine)() as session, gzip.open(partial, "wt", encoding="utf-8") as out:
        # Every table from one snapshot: the session holds one transaction throughout
        # (on SQLite a read transaction in WAL mode is a snapshot by itself).
        if engine.dialect.name == "postgresql":
            session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        write_line(out, header(revision))
        for table in tables():
            columns = [c.name for c in table.columns]
            write_line(out, {"table": table.name, "columns": columns})
            count = 0
            ordered = select(*table.columns).order_by(*table.primary_key.columns)
            for row in session.execute(ordered.execution_options(yield_per=BATCH_ROWS)):
                line = row_text(row)
                out.write(line + "\n")
                written.longest = max(written.longest, len(line.encode()))
                count += 1
                if progress and count % BATCH_ROWS == 0:
                    progress(table.name, count)
            written.rows[table.name] = count
            if progress:
                progress(table.name, count)
        write_line(out, {"end": True, "rows": written.rows})
    partial.replace(path)  # never a half-written file under the name asked for
    return written
