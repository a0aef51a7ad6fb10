"""The backup file: gzip'd JSON lines, so it streams both ways and any tool can read it.

    {"format": "gpuinv-backup", "version": 1, "schema": "0005", "created_at": ..., ...}
    {"table": "tenant", "columns": ["id", "slug", ...]}
    ["4f0c...", "acme", ...]                      one array per row, in column order
    ...
    {"end": true, "rows": {"tenant": 3, "device": 100000, ...}}

Writing is plain. Reading never trusts the file: no line longer than ``max_line`` bytes is
ever held (a gzip bomb costs that much memory and no more), and every line must be whole,
UTF-8 and JSON that both databases can store (finite numbers, valid Unicode, nesting under
MAX_DEPTH). What the lines after the header mean is the loader's to check."""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from collections.abc import Generator, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine

from api.db.backup.contents import head_revision, known_revisions
from api.db.backup.errors import BackupError, show
from api.db.base import utcnow

FORMAT = "gpuinv-backup"
VERSION = 1

# The longest line a restore reads, in bytes. Memory is bounded by it: a longer line (a
# gzip bomb is one) is refused once this much of it has been read, and a line under it
# costs at most about 30 bytes of memory per byte once parsed (a line of tiny JSON objects;
# ours cost far less). Our longest lines, allocations and their audit events, hold a
# device document of some 1.5 KB per device allocated.
MAX_LINE = 4 * 2**20
# JSON deeper than this is refused: ours nests a handful of levels, and Python's json
# module fails on about a thousand (RecursionError), at a depth that depends on the caller.
MAX_DEPTH = 100

_COMPACT = (",", ":")


# -- writing ------------------------------------------------------------------------------


def header(revision: str | None) -> dict[str, Any]:
    """The first line: what wrote the file, and the schema its rows are at."""
    from api import __version__

    return {
        "format": FORMAT,
        "version": VERSION,
        "schema": revision,
        "created_at": utcnow().isoformat(),
        "gpuinv": __version__,
    }


def write_line(out: IO[str], value: Any) -> None:
    """A header, table or end line."""
    out.write(json.dumps(value, separators=_COMPACT) + "\n")


def row_text(row: Any) -> str:
    """A row's line without its newline: its values as a JSON array, in column order."""
    return json.dumps([_encode(v) for v in row], separators=_COMPACT)


def _encode(value: Any) -> Any:
    """Datetimes as ISO 8601 (with their time zone); everything else is JSON already."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# -- reading ------------------------------------------------------------------------------


def read_lines(path: Path, max_line: int) -> Generator[tuple[int, int, Any]]:
    """(line number, bytes, JSON value) for every line of the gzip'd file."""
    for number, raw in _raw_lines(path, max_line):
        yield number, len(raw), _parse(path, number, raw)


def check_header(path: Path, first: tuple[int, int, Any] | None, engine: Engine) -> str:
    """The file's first line; returns the schema it names, one this gpuinv knows."""
    value = first[2] if first else None
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise BackupError(f"{path}: not a gpuinv backup (line 1 is no gpuinv-backup header)")
    if value.get("version") != VERSION:
        raise BackupError(
            f"{path}: backup format version {show(value.get('version'))}; this gpuinv reads "
            f"version {VERSION}"
        )
    schema = value.get("schema")
    if not isinstance(schema, str):
        raise BackupError(f"{path}: the header names no schema ({show(schema)})")
    if schema not in known_revisions(engine):
        raise BackupError(
            f"{path}: written by a newer gpuinv (schema {show(schema)}; this one knows up to "
            f"{head_revision(engine)}): restore it with that version or a later one"
        )
    return schema


def _raw_lines(path: Path, max_line: int) -> Iterator[tuple[int, bytes]]:
    """Every line whole, newline included, but never more than ``max_line`` bytes of one
    in memory: a longer line is refused when that much of it has been decompressed."""
    try:
        with gzip.open(path, "rb") as source:
            number = 0
            while line := source.readline(max_line + 1):
                number += 1
                if not line.endswith(b"\n"):  # every line is written whole, newline included
                    if len(line) > max_line:
                        raise BackupError(
                            f"{path}: line {number} is longer than {_size(max_line)}, the "
                            "longest line a restore reads (--max-line-mib sets it)"
                        )
                    raise BackupError(
                        f"{path}: cut short (line {number} is incomplete): nothing was restored"
                    )
                yield number, line
    except (EOFError, OSError, zlib.error) as exc:
        # gzip says "Compressed file ended before the end-of-stream marker" for a cut file,
        # "CRC check failed" or "invalid ..." for a damaged one
        raise BackupError(f"{path}: not a complete gpuinv backup ({exc})") from None


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _parse(path: Path, number: int, raw: bytes) -> Any:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BackupError(
            f"{path}: line {number} is not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
            f"{exc.start + 1})"
        ) from None
    try:
        value = json.loads(line, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BackupError(f"{path}: line {number} is not JSON ({exc.msg})") from None
    except RecursionError:
        raise BackupError(
            f"{path}: line {number} nests JSON deeper than {MAX_DEPTH} levels"
        ) from None
    except ValueError as exc:  # an integer of over 4,300 digits, NaN, Infinity, 1e999
        reason = str(exc).split(";")[0]
        raise BackupError(f"{path}: line {number} holds a number JSON cannot ({reason})") from None
    # Only a line with that many brackets can nest that deep, and only one with a \uD8xx
    # escape can hold half a surrogate pair: the (slower) walk is for those alone.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH or _SURROGATE_ESCAPE.search(raw):
        problem = _nesting_or_text_problem(value)
        if problem:
            raise BackupError(f"{path}: line {number} {problem}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"{literal[:30]} is too large for a float")
    return number


def _nesting_or_text_problem(value: Any) -> str | None:
    """What makes a parsed line unstorable: JSON deeper than MAX_DEPTH, or a string with a
    lone surrogate (valid JSON, not valid Unicode: neither database can store it).

    A stack of iterators, one per open container: memory grows with the depth only."""
    stack = [iter([value])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, str) and not _is_unicode(item):
                return f"holds a string that is not valid Unicode (a lone surrogate): {show(item)}"
            if isinstance(item, list | dict):
                if len(stack) > MAX_DEPTH:
                    return f"nests JSON deeper than {MAX_DEPTH} levels"
                stack.append(iter(item) if isinstance(item, list) else _keys_and_values(item))
                break
        else:
            stack.pop()
    return None


def _keys_and_values(item: dict[str, Any]) -> Iterator[Any]:
    yield from item
    yield from item.values()


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
