"""`gpuinv backup FILE` / `gpuinv restore FILE`: the whole inventory, profiles, allocations,
tokens and audit log in one file, restored into an empty database row for row.

The file is gzip'd JSON lines (fileformat.py shows one), so it streams both ways and any
tool can read it. A backup (dump.py) writes every table from one snapshot.

A restore (restoring.py) never trusts the file. It goes in two passes:

1. Check (check.py): read the file once, line by line, never holding more than
   ``max_line`` bytes of one, and load it into a scratch SQLite database in a temporary
   directory, built by our own migrations at the schema the file names. Python checks what
   SQLite's loose typing would let through (column_checks.py: types, lengths, integer
   ranges of the target database, JSON, datetimes, UUIDs, NOT NULL); the scratch database
   checks the rest with the schema's own constraints (loader.py: CHECK, unique keys and
   partial unique indexes, foreign keys), so a new constraint is checked without a change
   here. The scratch database is then migrated to head, which tries an older schema's data
   migrations too.
2. Write: only then is the target touched: its schema created (or an empty one migrated)
   and every row copied from the scratch database in one transaction (into SQLite by
   INSERT ... SELECT from it attached).

A bad file is refused with one line naming the line, table, column and value, and the
target is left as it was: no rows and, if it had none, no schema. The scratch database
takes about as much disk as the restored one (in TMPDIR). Should the write itself fail
(the database gone, its disk full), its rows are rolled back and the empty schema stays,
which a new restore accepts.

The change feed (device_change) is not kept: it is derived, and the database's triggers
write it afresh as the devices are restored.
"""

from __future__ import annotations

from api.db.backup.contents import tables
from api.db.backup.dump import Written, backup
from api.db.backup.errors import BackupError
from api.db.backup.fileformat import MAX_LINE
from api.db.backup.loader import Plan
from api.db.backup.restoring import restore

__all__ = ["MAX_LINE", "BackupError", "Plan", "Written", "backup", "restore", "tables"]
