"""The restore matrix (issue 12): damaged backups, made from a real backup of a small fleet,
each refused on both backends with one line naming the fault, nothing written (no rows,
and no schema either), and memory bounded.

Every kind runs in-process through ``backup.restore`` (a refusal must be a BackupError
with a one-line message; anything else is a bug the CLI would print as a traceback). A
representative subset, the gzip bomb among them, runs through the real `gpuinv restore`
in a subprocess: exit code 1, exactly one line on stderr, no traceback, and the child's
peak RSS (from wait4's rusage, i.e. the kernel's ru_maxrss) under MEMORY_BOUND.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import subprocess
import sys
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session, sessionmaker

from api.db import backup
from api.db.session import make_engine
from tests.support.api import Api, make_token
from tests.support.backup import populate
from tests.support.database import fresh_postgres_database, wipe
from tests.support.processes import GPUINV
from tests.support.server import ServerThread

# Peak RSS of `gpuinv restore` on any of these files. It starts at about 75 MiB; the bomb
# is refused once MAX_LINE (4 MiB) of it is read; the costliest line under the limit (tiny
# JSON objects, some 30 bytes of memory per byte of text) adds about 120 MiB.
MEMORY_BOUND = 256 * 2**20
BOMB_BYTES = 400 * 2**20  # one line this long, in about 400 KB of gzip


# -- the good backup, and ways to damage it ---------------------------------------------


@dataclass
class Good:
    """The lines of a good backup, and edits of them (each returns new lines)."""

    lines: list[str]

    def table_at(self, table: str) -> int:
        for i, line in enumerate(self.lines):
            if line.startswith('{"table":') and json.loads(line)["table"] == table:
                return i
        raise KeyError(table)

    def columns(self, table: str) -> list[str]:
        return json.loads(self.lines[self.table_at(table)])["columns"]

    def row_at(self, table: str, k: int = 0) -> int:
        index = self.table_at(table) + 1 + k
        assert self.lines[index].startswith("["), f"{table} has no row {k}"
        return index

    def row(self, table: str, k: int = 0) -> dict[str, Any]:
        values = json.loads(self.lines[self.row_at(table, k)])
        return dict(zip(self.columns(table), values, strict=True))

    def section(self, table: str) -> tuple[int, int]:
        """The lines of a table: its table line and rows, as a slice's start and stop."""
        start = self.table_at(table)
        stop = start + 1
        while self.lines[stop].startswith("["):
            stop += 1
        return start, stop

    def replaced(self, index: int, *new: str) -> list[str]:
        return [*self.lines[:index], *new, *self.lines[index + 1 :]]

    def inserted(self, index: int, *new: str) -> list[str]:
        return [*self.lines[:index], *new, *self.lines[index:]]

    def with_row(self, table: str, k: int = 0, **values: Any) -> list[str]:
        """The k-th row of ``table`` with some columns changed."""
        row = self.row(table, k) | values
        return self.replaced(self.row_at(table, k), _dumps(list(row.values())))

    def with_raw(self, table: str, column: str, literal: str, k: int = 0) -> list[str]:
        """A column's value replaced by JSON text as given (NaN, 1e999, huge numbers)."""
        marker = f"@@{uuid.uuid4().hex}@@"
        line = self.with_row(table, k, **{column: marker})[self.row_at(table, k)]
        return self.replaced(self.row_at(table, k), line.replace(f'"{marker}"', literal))

    def with_extra_row(self, table: str, k: int = 0, **values: Any) -> list[str]:
        """A copy of the k-th row (with some columns changed) after it; the end line
        counts it, so that the copy is the only fault."""
        row = self.row(table, k) | values
        return recount(self.inserted(self.row_at(table, k) + 1, _dumps(list(row.values()))))

    def with_header(self, **fields: Any) -> list[str]:
        header = {k: v for k, v in (json.loads(self.lines[0]) | fields).items() if v is not DROP}
        return self.replaced(0, _dumps(header))

    def with_end(self, end: Any) -> list[str]:
        return self.replaced(len(self.lines) - 1, _dumps(end))

    def end_rows(self) -> dict[str, int]:
        return json.loads(self.lines[-1])["rows"]

    def with_columns(
        self,
        table: str,
        header: Callable[[list[str]], list[Any]],
        rows: Callable[[list[Any]], list[Any]],
    ) -> list[str]:
        """The table line's columns edited by ``header`` and every row of it by ``rows``."""
        start, stop = self.section(table)
        lines = list(self.lines)
        lines[start] = _dumps({"table": table, "columns": header(self.columns(table))})
        for i in range(start + 1, stop):
            lines[i] = _dumps(rows(json.loads(lines[i])))
        return lines

    def moved_before(self, table: str, before: str) -> list[str]:
        """``table``'s whole section moved to just before ``before``'s."""
        start, stop = self.section(table)
        section = self.lines[start:stop]
        rest = self.lines[:start] + self.lines[stop:]
        at = Good(rest).table_at(before)
        return rest[:at] + section + rest[at:]


DROP = object()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def recount(lines: list[str]) -> list[str]:
    """The end line rewritten to count the rows the lines hold."""
    rows: dict[str, int] = {}
    table = None
    for line in lines[1:-1]:
        value = json.loads(line)
        if isinstance(value, dict) and "table" in value:
            table = value["table"]
            rows[table] = 0
        elif isinstance(value, list) and table is not None:
            rows[table] += 1
    return [*lines[:-1], _dumps({"end": True, "rows": rows})]


def pack(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def packed_bytes(lines: list[bytes]) -> bytes:
    return gzip.compress(b"\n".join(lines) + b"\n", mtime=0)


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


@functools.cache
def _bomb(start: str, rest: str) -> bytes:
    out = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip container
    parts = [out.compress((start + '\n["').encode())]
    chunk = b"a" * 2**20
    parts += [out.compress(chunk) for _ in range(BOMB_BYTES // len(chunk))]
    parts.append(out.compress(('"]\n' + rest + "\n").encode()) + out.flush())
    return b"".join(parts)


def bomb(good: Good) -> bytes:
    """One row of BOMB_BYTES, compressed as it is made: a few hundred KB of gzip that the
    test itself never holds decompressed (made once per good file: it takes seconds)."""
    at = good.row_at("tenant")
    return _bomb("\n".join(good.lines[:at]), "\n".join(good.lines[at:]))


def wide_line(good: Good) -> bytes:
    """A row just under the line limit whose JSON expands the most in memory (empty
    objects, about 30 times their text), refused only after it is parsed and checked: the
    most a line under the limit costs."""
    lines = Good(good.with_row("device", kind="mainframe", tags="@@objects@@"))
    line = lines.lines[lines.row_at("device")]
    objects = (backup.MAX_LINE - len(line) - 100) // 3
    wide = line.replace('"@@objects@@"', "[" + "{}," * objects + "{}]")
    return pack(lines.replaced(lines.row_at("device"), wide))


OTHER_ID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[Good, bytes], bytes]  # (the good lines, the good file) -> a bad file
    says: tuple[str, ...]  # the message holds all of these


def kind(name: str, says: str | tuple[str, ...], lines: Callable[[Good], list[str]]) -> Kind:
    said = (says,) if isinstance(says, str) else says
    return Kind(name, lambda good, _: pack(lines(good)), said)


def raw(name: str, says: str | tuple[str, ...], data: Callable[[Good, bytes], bytes]) -> Kind:
    return Kind(name, data, (says,) if isinstance(says, str) else says)


NOT_GZIP = "not a complete gpuinv backup"
# A flipped bit in compressed data is found one of several ways (a zlib error, bytes that
# are not UTF-8 or not JSON, the CRC at the end): those kinds check only that it is.

KINDS = [
    # the container
    raw("empty file", "not a gpuinv backup", lambda g, f: b""),
    raw("CSV, not a backup", NOT_GZIP, lambda g, f: b"hostname,totalcpu\ngpu-1,8\n"),
    raw("backup not gzipped", NOT_GZIP, lambda g, f: ("\n".join(g.lines) + "\n").encode()),
    raw("gzip cut 40 bytes short", NOT_GZIP, lambda g, f: f[:-40]),
    raw("gzip cut in half", NOT_GZIP, lambda g, f: f[: len(f) // 2]),
    raw("gzip header only", NOT_GZIP, lambda g, f: f[:10]),
    raw("bit flipped in the gzip magic", NOT_GZIP, lambda g, f: flipped(f, 1)),
    raw("bit flipped in the gzip flags", (), lambda g, f: flipped(f, 3)),  # a comment flag
    raw("bit flipped early in the data", (), lambda g, f: flipped(f, 40)),
    raw("bit flipped mid-data", (), lambda g, f: flipped(f, len(f) // 2)),
    raw("bit flipped late in the data", (), lambda g, f: flipped(f, len(f) - 20)),
    raw("bit flipped in the CRC", "CRC check failed", lambda g, f: flipped(f, len(f) - 6)),
    raw("bit flipped in the length", "Incorrect length", lambda g, f: flipped(f, len(f) - 2)),
    raw("garbage after the gzip stream", NOT_GZIP, lambda g, f: f + b"garbage!"),
    raw("gzip bomb: one 400 MB line", "longer than 4 MiB", lambda g, f: bomb(g)),
    # text and lines
    raw(
        "byte 0xff in a row",
        ("not UTF-8", "byte 0xff"),
        lambda g, f: packed_bytes(  # the first string of the tenant row begins with it
            [
                line.encode().replace(b'["', b'["\xff', 1)
                if i == g.row_at("tenant")
                else line.encode()
                for i, line in enumerate(g.lines)
            ]
        ),
    ),
    raw(
        "Latin-1 header",
        "line 1 is not UTF-8",
        lambda g, f: packed_bytes(
            [b"\xe9" + g.lines[0].encode(), *(x.encode() for x in g.lines[1:])]
        ),
    ),
    kind(
        "UTF-8 byte-order mark",
        ("line 1 is not JSON", "BOM"),
        lambda g: g.replaced(0, "\ufeff" + g.lines[0]),
    ),
    kind(
        "raw NUL byte in a row",
        "not JSON",
        lambda g: g.replaced(
            g.row_at("tenant"), g.lines[g.row_at("tenant")].replace("acme", "ac\x00me", 1)
        ),
    ),
    kind("a line that is not JSON", "not JSON", lambda g: g.inserted(5, "{oops")),
    kind("a blank line", "not JSON", lambda g: g.inserted(5, "")),
    kind(
        "a row cut in half",
        "not JSON",
        lambda g: g.replaced(g.row_at("device"), g.lines[g.row_at("device")][:40]),
    ),
    raw(
        "last line without its newline",
        "cut short (line",
        lambda g, f: gzip.compress("\n".join(g.lines).encode()),
    ),
    kind("cut at a line, 60% in", "no end line", lambda g: g.lines[: len(g.lines) * 6 // 10]),
    kind("cut before the end line", "no end line", lambda g: g.lines[:-1]),
    kind(
        "a line after the end line",
        "after the end line",
        lambda g: [*g.lines, g.lines[g.row_at("tenant")]],
    ),
    # JSON we cannot store
    kind(
        "JSON nested 100,000 deep",
        "deeper than 100 levels",
        lambda g: g.inserted(g.row_at("tenant"), "[" * 100_000 + "]" * 100_000),
    ),
    kind(
        "JSON nested 150 deep in a column",
        "deeper than 100 levels",
        lambda g: g.with_row("device", tags=nested(150)),
    ),
    kind(
        "an integer of 5,000 digits",
        ("line", "4300 digits"),
        lambda g: g.with_raw("device", "total_cpu", "9" * 5000),
    ),
    kind(
        "NaN in a JSON column",
        "NaN is not a JSON number",
        lambda g: g.with_raw("device", "tags", "NaN"),
    ),
    kind(
        "Infinity in a JSON column",
        "Infinity is not a JSON number",
        lambda g: g.with_raw("device", "tags", '{"x": -Infinity}'),
    ),
    kind(
        "1e999 in a JSON column",
        "too large for a float",
        lambda g: g.with_raw("device", "tags", '{"x": 1e999}'),
    ),
    kind(
        "lone surrogate in a string column",
        "lone surrogate",
        lambda g: g.with_row("device", hostname="gpu-\ud800"),
    ),
    kind(
        "lone surrogate in a JSON column",
        "lone surrogate",
        lambda g: g.with_row("device", tags={"\udc00": "x"}),
    ),
    kind(
        "NUL character in a string column",
        ("column hostname", "NUL character"),
        lambda g: g.with_row("device", hostname="gpu\x00"),
    ),
    # lines of the wrong shape
    kind(
        "a JSON string for a row",
        "a JSON string where a row",
        lambda g: g.inserted(g.row_at("tenant"), '"acme"'),
    ),
    kind(
        "a JSON number for a row",
        "a JSON number where a row",
        lambda g: g.inserted(g.row_at("tenant"), "42"),
    ),
    kind(
        "a JSON null for a row",
        "null where a row",
        lambda g: g.inserted(g.row_at("tenant"), "null"),
    ),
    kind(
        "a JSON true for a row",
        "true or false where a row",
        lambda g: g.inserted(g.row_at("tenant"), "true"),
    ),
    kind(
        "an object for a row",
        "a JSON object where a row",
        lambda g: g.inserted(g.row_at("tenant"), '{"id": 1}'),
    ),
    # the header
    kind("no header", "not a gpuinv backup", lambda g: g.lines[1:]),
    kind(
        "another format's header", "not a gpuinv backup", lambda g: g.with_header(format="pg_dump")
    ),
    kind(
        "header is an array", "not a gpuinv backup", lambda g: g.replaced(0, '["gpuinv-backup", 1]')
    ),
    kind("header without a version", "format version None", lambda g: g.with_header(version=DROP)),
    kind("format version 2", "format version 2", lambda g: g.with_header(version=2)),
    kind("newer schema", ("newer gpuinv", "'9999'"), lambda g: g.with_header(schema="9999")),
    kind("header without a schema", "names no schema", lambda g: g.with_header(schema=DROP)),
    kind(
        "schema that is not a string", "names no schema", lambda g: g.with_header(schema=["0007"])
    ),
    kind(
        "the header twice",
        ("line 2", "a JSON object where a row"),
        lambda g: g.inserted(1, g.lines[0]),
    ),
    # tables and columns
    kind(
        "a row before any table line",
        "a row before any table line",
        lambda g: g.lines[:1] + g.lines[2:],
    ),
    kind(
        "table line without columns",
        "keys table and columns",
        lambda g: g.replaced(g.table_at("tenant"), '{"table":"tenant"}'),
    ),
    kind(
        "table line with an extra key",
        "keys table and columns",
        lambda g: g.replaced(
            g.table_at("tenant"),
            _dumps({"table": "tenant", "columns": g.columns("tenant"), "rows": 1}),
        ),
    ),
    kind(
        "columns that are a string",
        "columns must be a list",
        lambda g: g.replaced(
            g.table_at("tenant"), '{"table":"tenant","columns":"id,slug,name,created_at"}'
        ),
    ),
    kind(
        "a column name that is a number",
        "columns must be a list",
        lambda g: g.replaced(
            g.table_at("tenant"),
            _dumps({"table": "tenant", "columns": [*g.columns("tenant")[:-1], 4]}),
        ),
    ),
    kind(
        "unknown table",
        "unknown table 'evil'",
        lambda g: recount(
            g.inserted(len(g.lines) - 1, '{"table":"evil","columns":["x"]}', '["y"]')
        ),
    ),
    kind(
        "table name that is a number",
        "unknown table 7",
        lambda g: recount(g.inserted(len(g.lines) - 1, '{"table":7,"columns":["x"]}')),
    ),
    kind(
        "table name that is a list",
        "unknown table ['device']",
        lambda g: g.inserted(len(g.lines) - 1, '{"table":["device"],"columns":["x"]}'),
    ),
    kind(
        "an alembic_version table",
        "alembic_version",
        lambda g: recount(
            g.inserted(
                len(g.lines) - 1,
                '{"table":"alembic_version","columns":["version_num"]}',
                '["0007"]',
            )
        ),
    ),
    kind(
        "a device_change table",
        "device_change is derived",
        lambda g: recount(
            g.inserted(len(g.lines) - 1, '{"table":"device_change","columns":["seq"]}')
        ),
    ),
    kind(
        "a table twice",
        "table tenant again",
        lambda g: recount(g.inserted(len(g.lines) - 1, g.lines[g.table_at("tenant")])),
    ),
    kind(
        "a table missing",
        "no table switch",
        lambda g: recount(g.lines[: g.section("switch")[0]] + g.lines[g.section("switch")[1] :]),
    ),
    kind(
        "unknown column",
        "no column 'evil'",
        lambda g: g.with_columns("device", lambda c: [*c, "evil"], lambda r: [*r, 1]),
    ),
    kind(
        "missing column",
        "column hostname missing",
        lambda g: g.with_columns("device", lambda c: [c[0], *c[2:]], lambda r: [r[0], *r[2:]]),
    ),
    kind(
        "a column twice",
        "column kind twice",
        lambda g: g.with_columns("device", lambda c: [*c, c[0]], lambda r: [*r, r[0]]),
    ),
    kind(
        "a row one value short",
        ("table device", "values for"),
        lambda g: g.replaced(
            g.row_at("device"), _dumps(json.loads(g.lines[g.row_at("device")])[:-1])
        ),
    ),
    kind(
        "a row one value long",
        ("table device", "values for"),
        lambda g: g.replaced(
            g.row_at("device"), _dumps([*json.loads(g.lines[g.row_at("device")]), 1])
        ),
    ),
    kind(
        "children before their parents",
        ("table gpu", "refers to no device row"),
        lambda g: g.moved_before("gpu", "device"),
    ),
    # the end line
    kind(
        "end line counts a row more",
        ("counts 2 rows of table tenant", "holds 1"),
        lambda g: g.with_end({"end": True, "rows": g.end_rows() | {"tenant": 2}}),
    ),
    kind(
        "a row more than the end line counts",
        ("counts 18 rows of table gpu", "holds 19"),
        lambda g: g.inserted(
            g.row_at("gpu"),
            _dumps([99, *json.loads(g.lines[g.row_at("gpu")])[1:2], 9, "NVIDIA", "H100", None]),
        ),
    ),
    kind(
        "end line omits a table",
        "counts None rows of table gpu",
        lambda g: g.with_end(
            {"end": True, "rows": {k: v for k, v in g.end_rows().items() if k != "gpu"}}
        ),
    ),
    kind(
        "end line counts an unknown table",
        "rows of table 'evil', which the file does not hold",
        lambda g: g.with_end({"end": True, "rows": g.end_rows() | {"evil": 0}}),
    ),
    kind(
        "end line counts in strings",
        "counts '1' rows of table tenant",
        lambda g: g.with_end({"end": True, "rows": g.end_rows() | {"tenant": "1"}}),
    ),
    kind(
        "end line rows not an object",
        "rows are not a JSON object",
        lambda g: g.with_end({"end": True, "rows": [1]}),
    ),
    kind("end line without rows", "an end line is", lambda g: g.with_end({"end": True})),
    kind(
        "end line saying false",
        "an end line is",
        lambda g: g.with_end({"end": False, "rows": g.end_rows()}),
    ),
    # values against their column's type
    kind(
        "a string in an integer column",
        ("column total_cpu", "'8' is not an integer"),
        lambda g: g.with_row("device", total_cpu="8"),
    ),
    kind(
        "a fraction in an integer column",
        ("column index", "0.5 is not an integer"),
        lambda g: g.with_row("gpu", index=0.5),
    ),
    kind(
        "a whole float in an integer column",
        ("column total_gpus", "8.0 is not an integer"),
        lambda g: g.with_row("device", total_gpus=8.0),
    ),
    kind(
        "true in an integer column",
        ("column generation", "True is not an integer"),
        lambda g: g.with_row("device", generation=True),
    ),
    kind(
        "an integer over 64 bits",
        ("column total_memory_mb", "64-bit"),
        lambda g: g.with_row("device", total_memory_mb=2**63),
    ),
    kind(
        "a number in a string column",
        ("column hostname", "42 is not a string"),
        lambda g: g.with_row("device", hostname=42),
    ),
    kind(
        "an array in a string column",
        ("column hostname", "is not a string"),
        lambda g: g.with_row("device", hostname=["gpu-1"]),
    ),
    kind(
        "an object in a string column",
        ("column slug", "is not a string"),
        lambda g: g.with_row("tenant", slug={"a": 1}),
    ),
    kind(
        "a string over its length",
        ("column hostname", "256 characters, over the 255"),
        lambda g: g.with_row("device", hostname="h" * 256),
    ),
    kind(
        "a short string over its length",
        ("column source_system", "over the 16"),
        lambda g: g.with_row("device", source_system="x" * 17),
    ),
    kind(
        "a string in a boolean column",
        ("column exclusive", "'true' is not true or false"),
        lambda g: g.with_row("allocation_device", exclusive="true"),
    ),
    kind(
        "1 in a boolean column",
        ("column healthy", "1 is not true or false"),
        lambda g: g.with_row("device", healthy=1),
    ),
    kind(
        "a datetime that is not one",
        ("column at", "not an ISO 8601"),
        lambda g: g.with_row("audit_event", at="yesterday"),
    ),
    kind(
        "a datetime without a time zone",
        ("column created_at", "no time zone"),
        lambda g: g.with_row("tenant", created_at="2024-01-01T00:00:00"),
    ),
    kind(
        "a datetime as a number",
        ("column created_at", "is not a datetime"),
        lambda g: g.with_row("device", created_at=1700000000),
    ),
    kind(
        "a datetime out of range in UTC",
        ("column at", "out of range"),
        lambda g: g.with_row("audit_event", at="0001-01-01T00:00:00+14:00"),
    ),
    kind(
        "a datetime in year 10000",
        ("column expires_at", "not an ISO 8601"),
        lambda g: g.with_row("api_token", expires_at="10000-01-01T00:00:00+00:00"),
    ),
    kind(
        "an id that is not a UUID",
        ("table device, column id", "not a UUID"),
        lambda g: g.with_row("device", id="gpu-1"),
    ),
    kind(
        "an id in capitals",
        ("table tenant, column id", "not a UUID"),
        lambda g: g.with_row("tenant", id=g.row("tenant")["id"].upper()),
    ),
    # NOT NULL
    kind(
        "null hostname",
        ("column hostname", "NOT NULL"),
        lambda g: g.with_row("device", hostname=None),
    ),
    kind(
        "null integer key",
        ("table gpu, column id", "NOT NULL"),
        lambda g: g.with_row("gpu", id=None),
    ),
    kind(
        "null string key",
        ("table tenant, column id", "NOT NULL"),
        lambda g: g.with_row("tenant", id=None),
    ),
    kind("null JSON", ("column tags", "NOT NULL"), lambda g: g.with_row("device", tags=None)),
    kind(
        "null boolean",
        ("column active", "NOT NULL"),
        lambda g: g.with_row("allocation_device", active=None),
    ),
    kind("null datetime", ("column at", "NOT NULL"), lambda g: g.with_row("audit_event", at=None)),
    kind(
        "null foreign key",
        ("column device_id", "NOT NULL"),
        lambda g: g.with_row("gpu", device_id=None),
    ),
    # CHECK constraints
    kind(
        "a negative total",
        ("total_cpu=-1", "breaks CHECK"),
        lambda g: g.with_row("device", total_cpu=-1, free_cpu=0),
    ),
    kind(
        "more free than total",
        ("free_gpus=9", "breaks CHECK"),
        lambda g: g.with_row("device", free_gpus=9),
    ),
    kind(
        "a negative free amount",
        ("free_memory_mb=-1", "breaks CHECK"),
        lambda g: g.with_row("device", free_memory_mb=-1),
    ),
    kind(
        "an unknown status",
        ("status='broken'", "breaks CHECK"),
        lambda g: g.with_row("device", status="broken"),
    ),
    kind(
        "an unknown device kind",
        ("kind='mainframe'", "breaks CHECK"),
        lambda g: g.with_row("device", kind="mainframe"),
    ),
    kind(
        "an unknown switch status",
        ("table switch", "breaks CHECK"),
        lambda g: g.with_row("switch", status="on fire"),
    ),
    kind(
        "an unknown token role",
        ("role='root'", "breaks CHECK"),
        lambda g: g.with_row("api_token", role="root"),
    ),
    kind(
        "a negative port rate",
        ("rate_gbps=-400", "breaks CHECK"),
        lambda g: g.with_row("infiniband", rate_gbps=-400),
    ),
    kind(
        "a negative allocated amount",
        ("gpus=-8", "breaks CHECK"),
        lambda g: g.with_row("allocation_device", gpus=-8),
    ),
    # keys
    kind("a duplicate row", ("table tenant", "again"), lambda g: g.with_extra_row("tenant")),
    kind(
        "a duplicate string key",
        ("table device", "id=", "again"),
        lambda g: g.with_extra_row("device", hostname="gpu-9"),
    ),
    kind(
        "a duplicate integer key",
        ("table gpu", "id=", "again"),
        lambda g: g.with_extra_row("gpu", index=9),
    ),
    kind(
        "a duplicate tenant slug",
        ("slug='acme'", "again"),
        lambda g: g.with_extra_row("tenant", id=OTHER_ID),
    ),
    kind(
        "a hostname twice in a namespace",
        ("hostname='", "again"),
        lambda g: g.with_extra_row("device", id=OTHER_ID),
    ),
    kind(
        "a GPU index twice on a device",
        ("index=0", "again"),
        lambda g: g.with_extra_row("gpu", id=999),
    ),
    kind(
        "two active allocations of one environment",
        ("environment=", "again"),
        lambda g: Good(g.with_row("allocation", 0, released_at=None)).with_row(
            "allocation", 1, environment=g.row("allocation", 0)["environment"], released_at=None
        ),
    ),
    kind(
        "an exclusive device held twice",
        ("table allocation_device", "again"),
        lambda g: g.with_row(
            "allocation_device",
            1,
            device_id=g.row("allocation_device", 0)["device_id"],
            active=True,
        ),
    ),
    # foreign keys
    kind(
        "a device of no tenant",
        ("tenant_id='" + OTHER_ID, "no tenant row"),
        lambda g: g.with_row("device", tenant_id=OTHER_ID),
    ),
    kind(
        "a GPU of no device",
        ("table gpu", "no device row"),
        lambda g: g.with_row("gpu", device_id=OTHER_ID),
    ),
    kind(
        "a project of no tenant",
        ("table project", "no tenant row"),
        lambda g: g.with_row("project", tenant_id=OTHER_ID),
    ),
    kind(
        "a held device of no allocation",
        ("allocation_id=", "no allocation row"),
        lambda g: g.with_row("allocation_device", allocation_id=OTHER_ID),
    ),
    kind(
        "a port of no device",
        ("table infiniband", "no device row"),
        lambda g: g.with_row("infiniband", device_id=OTHER_ID),
    ),
    kind(
        "a token of no tenant",
        ("table api_token", "no tenant row"),
        lambda g: g.with_row("api_token", 1, tenant_id=OTHER_ID),
    ),
]

# Through the real CLI as well: one of each family, and the two that test memory.
THROUGH_CLI = [
    "gzip bomb: one 400 MB line",
    "a row just under the line limit, of empty objects",
    "gzip cut 40 bytes short",
    "byte 0xff in a row",
    "JSON nested 100,000 deep",
    "newer schema",
    "an alembic_version table",
    "a string in an integer column",
    "more free than total",
    "a GPU of no device",
]
# Only through the CLI, where its memory is measured: parsing it takes seconds.
WIDE_LINE = raw(
    "a row just under the line limit, of empty objects",
    ("kind='mainframe'", "breaks CHECK"),
    lambda g, f: wide_line(g),
)
BY_NAME = {k.name: k for k in [*KINDS, WIDE_LINE]}
assert len(BY_NAME) == len(KINDS) + 1, "two kinds share a name"
assert set(THROUGH_CLI) <= set(BY_NAME)


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good(
    database_url: str,
    engine: Engine,
    sessions: sessionmaker[Session],
    server: ServerThread,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Good, bytes]:
    """A real backup of a small fleet (as test_backup makes it), once per backend."""
    wipe(engine)
    server.app.state.live_index.reset()
    populate(Api(server.url, make_token(sessions, "platform-admin")), sessions)
    path = tmp_path_factory.mktemp("matrix") / "good.backup"
    backup.backup(engine, path)
    wipe(engine)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    return Good(lines), pack(lines)


@pytest.fixture(scope="module")
def postgres_databases(database_url: str) -> Iterator[list[tuple[str, Callable[[], None]]]]:
    """Throw-away PostgreSQL databases for the module's refusals, the last one in use:
    each refusal leaves it empty (each test checks), so one serves them all unless a
    failure dirtied it."""
    made: list[tuple[str, Callable[[], None]]] = []
    if database_url.startswith("postgresql"):
        made.append(fresh_postgres_database("gpuinv_matrix"))
    yield made
    for _, drop in made:
        drop()


@pytest.fixture
def target(
    database_url: str, postgres_databases: list[tuple[str, Callable[[], None]]], tmp_path: Path
) -> Iterator[str]:
    """An empty database of the session's backend."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'target.db'}"
        return
    url = postgres_databases[-1][0]
    yield url
    if _table_names(url):  # dirtied (a failed test, or the good restore): use a new one
        postgres_databases.append(fresh_postgres_database("gpuinv_matrix"))


def _table_names(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _damaged(kind: Kind, good: tuple[Good, bytes], tmp_path: Path) -> Path:
    path = tmp_path / "damaged.backup"
    path.write_bytes(kind.make(*good))
    return path


# -- the matrix -----------------------------------------------------------------------------


def test_the_good_backup_restores(good: tuple[Good, bytes], target: str, tmp_path: Path) -> None:
    """The matrix's base file is good: each fault below is the only one in its file."""
    path = tmp_path / "good.backup"
    path.write_bytes(good[1])
    engine = make_engine(target)
    try:
        plan = backup.restore(engine, path)
    finally:
        engine.dispose()
    assert plan.total == sum(good[0].end_rows().values())
    assert plan.rows["device"] == 4 and plan.rows["allocation_device"] == 2


@pytest.mark.parametrize("name", [k.name for k in KINDS])
def test_a_damaged_file_is_refused_in_one_line_and_nothing_is_written(
    name: str, good: tuple[Good, bytes], target: str, tmp_path: Path
) -> None:
    kind = BY_NAME[name]
    path = _damaged(kind, good, tmp_path)
    engine = make_engine(target)
    try:
        with pytest.raises(backup.BackupError) as refused:
            backup.restore(engine, path)
    finally:
        engine.dispose()
    said = str(refused.value)
    assert "\n" not in said, said
    assert said.startswith(str(path)), said  # every fault of a file names the file
    for words in kind.says:
        assert words in said, said
    assert _table_names(target) == []  # no rows, and no schema either


@pytest.mark.parametrize("name", THROUGH_CLI)
def test_gpuinv_restore_refuses_in_one_line_with_bounded_memory(
    name: str, good: tuple[Good, bytes], target: str, tmp_path: Path
) -> None:
    kind = BY_NAME[name]
    path = _damaged(kind, good, tmp_path)
    code, stderr, peak = _gpuinv_restore(target, path)
    assert code == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.count("\n") == 1 and stderr.startswith(f"Error: {path}"), stderr
    for words in kind.says:
        assert words in stderr, stderr
    assert peak < MEMORY_BOUND, f"{name}: peak RSS {peak / 2**20:.0f} MiB"
    assert _table_names(target) == []


# Runs the command given in its arguments and prints the child's peak RSS (KiB). A launcher
# of its own, because a child spawned straight from this test process starts (vfork, then
# exec) with this process' own high-water mark, which in a pytest worker that has run many
# tests is already some hundreds of MiB: the child's ru_maxrss would report that instead.
_MEASURED = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _gpuinv_restore(database_url: str, path: Path) -> tuple[int, str, int]:
    """Run `gpuinv restore` and return its exit code, stderr and peak RSS in bytes
    (wait4's rusage of that one process; Linux gives ru_maxrss in KiB)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, GPUINV, "restore", str(path)],
        env={**os.environ, "GPUINV_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
    )
    return done.returncode, done.stderr, int(done.stdout) * 1024


def test_integer_width_is_the_target_databases(
    database_url: str, good: tuple[Good, bytes], target: str, tmp_path: Path
) -> None:
    """An INTEGER column is 32-bit on PostgreSQL and 64-bit on SQLite: 2**31 CPUs are
    refused by the one and restored by the other (whose own backup could hold them)."""
    lines = good[0].with_row("device", total_cpu=2**31, free_cpu=0)
    path = tmp_path / "wide.backup"
    path.write_bytes(pack(lines))
    engine = make_engine(target)
    try:
        if database_url.startswith("postgresql"):
            with pytest.raises(backup.BackupError, match="2147483648 does not fit a 32-bit"):
                backup.restore(engine, path)
            assert _table_names(target) == []
        else:
            backup.restore(engine, path)
            with engine.connect() as connection:
                cpus = connection.exec_driver_sql("SELECT max(total_cpu) FROM device").scalar()
            assert cpus == 2**31
    finally:
        engine.dispose()
