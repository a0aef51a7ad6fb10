"""Bulk import: parse a whole JSON or CSV upload into specs, or refuse all of it.

The upload is validated as a whole before anything is written; every bad field of every
row is reported (``{row, field, message}``), so one round trip fixes a file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.domain.document import (
    DeviceSpec,
    DocumentError,
    InfinibandSpec,
    SwitchSpec,
    infiniband_name,
    parse_device,
    parse_infiniband,
    parse_switch,
)
from api.domain.errors import DomainError, FieldError, bad_input, bulk_input_error
from api.domain.fields import MACHINE_FACTS, MAX_COUNT, PORT_FACTS, SWITCH_FACTS
from api.domain.limits import JsonInputError, parse_json
from api.domain.vocabulary import Kind

SECTIONS: dict[str, Kind] = {
    "devices": Kind.BAREMETAL,
    "vms": Kind.VM,
    "switches": Kind.SWITCH,
    "infinibands": Kind.INFINIBAND,
}


@dataclass
class ImportBatch:
    devices: list[DeviceSpec] = field(default_factory=list)
    vms: list[DeviceSpec] = field(default_factory=list)
    switches: list[SwitchSpec] = field(default_factory=list)
    infinibands: list[InfinibandSpec] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.devices) + len(self.vms) + len(self.switches) + len(self.infinibands)


def _upload_error(message: str, field: str) -> DomainError:
    """A problem with the upload as a whole (row 0), in the same shape as row errors, so
    clients read ``extensions.errors`` for every failed import."""
    error = bad_input(message, field=field)
    error.extensions["errors"] = [{"row": 0, "field": field, "message": message}]
    return error


def parse_import(fmt: str, data: str) -> ImportBatch:
    fmt = fmt.lower()
    if fmt == "json":
        return parse_json_import(data)
    if fmt == "csv":
        return parse_csv_import(data)
    raise _upload_error(f"format: unknown import format {fmt!r} (JSON or CSV)", field="format")


def parse_json_import(data: str) -> ImportBatch:
    try:
        payload = parse_json(data)
    except json.JSONDecodeError as exc:
        raise _upload_error(
            f"data: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            field="data",
        ) from None
    except JsonInputError as exc:
        raise _upload_error(f"data: {exc}", field="data") from None
    if isinstance(payload, list):  # a bare list is a list of device documents
        payload = {"devices": payload}
    if not isinstance(payload, dict):
        raise _upload_error(
            "data: must be a JSON object with keys devices, vms, switches, infinibands",
            field="data",
        )
    unknown = sorted(set(payload) - set(SECTIONS))
    if unknown:
        raise _upload_error(
            f"data: unknown section(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(SECTIONS)})",
            field="data",
        )
    rows: list[tuple[str, int, Any]] = []
    for section in SECTIONS:
        items = payload.get(section)
        if items is None:  # not "or []": {} or "" would pass as an empty section unnoticed
            items = []
        if not isinstance(items, list):
            raise _upload_error(
                f"data.{section}: must be a list, got {type(items).__name__}", field=section
            )
        rows.extend((section, number, item) for number, item in enumerate(items, start=1))
    return _build_batch(rows)


# CSV columns: the machine facts (api/domain/fields.py) under their document keys, the
# other kinds' fields, and the GPU shorthand of a row. Whole numbers, or text.
_CSV_NUMBERS = {f.key for f in MACHINE_FACTS + PORT_FACTS if f.is_number} | {
    "gpuCount",
    "gpuMemoryMB",
}
_CSV_TEXT = {f.key for f in MACHINE_FACTS + SWITCH_FACTS + PORT_FACTS if not f.is_number} | {
    "kind",
    "hostname",
    "name",
    "status",
    "tenant",
    "project",
    "device",
    "port",
    "gpuVendor",
    "gpuModel",
}
_KIND_SECTION = {kind: section for section, kind in SECTIONS.items()}


def parse_csv_import(data: str) -> ImportBatch:
    """One row per item; ``kind`` picks the section (default baremetal).

    GPUs are described per row as ``gpuCount`` identical GPUs (``gpuVendor``, ``gpuModel``,
    ``gpuMemoryMB``), tags as ``tags.<key>`` columns. Rows are numbered as a spreadsheet
    shows them: the header is row 1.
    """
    lines = _Lines(data)
    # Errors read reader.reader.line_num: DictReader's own line_num moves only after a
    # record was read cleanly.
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise bulk_input_error([_csv_error(exc, reader.reader.line_num, lines.last, [])]) from None
    if not header:
        raise _upload_error("data: the CSV has no header row", field="data")
    errors = [
        FieldError(1, column, f"unknown column {column!r}")
        for column in header
        if column not in _CSV_NUMBERS | _CSV_TEXT and not column.startswith("tags.")
    ]
    if errors:
        raise bulk_input_error(errors)
    rows: list[tuple[str, int, Any]] = []
    for record in _records(reader, lines, header, errors):
        line = reader.line_num
        document, row_errors = _csv_document(record, line)
        errors.extend(row_errors)
        if not row_errors:
            section = _KIND_SECTION[Kind(document.pop("kind"))]
            rows.append((section, line, document))
    # The rows that read cleanly are validated even when others did not, so that one round
    # trip reports every bad field of the file.
    return _build_batch(rows, csv_rows=True, errors=errors)


class _Lines:
    """The upload's lines as the csv reader takes them, remembering the last one handed
    out, so that a reader error can say where it happened."""

    def __init__(self, data: str):
        self._lines = iter(io.StringIO(data))
        self.last = ""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        self.last = next(self._lines)
        return self.last


def _records(
    reader: csv.DictReader[str], lines: _Lines, header: Sequence[str], errors: list[FieldError]
) -> Iterator[dict[str | None, Any]]:
    """The reader's records. A record it cannot read is added to ``errors`` and ends the
    reading: the csv reader cannot go on past it."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.append(_csv_error(exc, reader.reader.line_num, lines.last, header))
            return
        yield record


def _csv_error(exc: csv.Error, row: int, line: str, header: Sequence[str]) -> FieldError:
    """Name the row and, for an over-long cell, the column (the csv module's own message
    names neither). The reader refuses cells over ``csv.field_size_limit()`` characters
    (131,072 by default); the limit is process-wide, so it is reported, not raised."""
    limit = csv.field_size_limit()
    if "field larger than field limit" in str(exc):
        cells = line.split(",")
        column = next((i for i, cell in enumerate(cells) if len(cell) > limit), None)
        field = header[column] if column is not None and column < len(header) else "(row)"
        return FieldError(row, field, f"a cell is longer than {limit} characters")
    return FieldError(row, "(row)", f"cannot be read as CSV: {exc}")


def _csv_document(
    record: dict[str | None, Any], line: int
) -> tuple[dict[str, Any], list[FieldError]]:
    errors: list[FieldError] = []
    if None in record:  # more cells than header columns
        errors.append(
            FieldError(line, "(row)", f"has {len(record[None])} cell(s) more than the header")
        )
    document: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for column, cell in record.items():
        if column is None or cell is None or not str(cell).strip():
            continue
        cell = cell.strip()
        if column.startswith("tags."):
            tags[column[len("tags.") :]] = cell
        elif column in _CSV_NUMBERS:
            try:
                document[column] = int(cell)
            except ValueError:
                errors.append(FieldError(line, column, f"must be a whole number, got {cell!r}"))
        else:
            document[column] = cell
    kind_text = str(document.get("kind", "baremetal")).lower()
    try:
        kind = Kind(kind_text)
    except ValueError:
        errors.append(
            FieldError(
                line,
                "kind",
                f"unknown kind {kind_text!r} (one of: {', '.join(k.value for k in Kind)})",
            )
        )
        return document, errors
    document["kind"] = kind.value
    if tags:
        document["tags"] = tags
    if kind in (Kind.BAREMETAL, Kind.VM) and "hostname" not in document and "name" in document:
        document["hostname"] = document.pop("name")
    gpu_columns = {
        k: document.pop(k)
        for k in ("gpuCount", "gpuVendor", "gpuModel", "gpuMemoryMB")
        if k in document
    }
    count = gpu_columns.get("gpuCount")
    if count is not None and not 0 <= count <= MAX_COUNT:
        # Checked before the list is built: a negative count would silently list no GPUs,
        # and a typo like 10**12 would build that many entries.
        errors.append(
            FieldError(line, "gpuCount", f"must be between 0 and {MAX_COUNT}, got {count}")
        )
    elif count:
        gpu = {
            "vendorCode": gpu_columns.get("gpuVendor"),
            "modelNo": gpu_columns.get("gpuModel"),
            "memoryMB": gpu_columns.get("gpuMemoryMB"),
        }
        document["gpus"] = [dict(gpu, index=i) for i in range(count)]
    elif (
        count is None
        and set(gpu_columns) - {"gpuCount"}
        and not any(e.field == "gpuCount" for e in errors)
    ):
        # Only for an empty gpuCount cell: 0 is a count (no GPUs), and a cell that is not a
        # number is already reported above.
        errors.append(
            FieldError(
                line, "gpuCount", "is required when gpuVendor, gpuModel or gpuMemoryMB are given"
            )
        )
    return document, errors


def _build_batch(
    rows: list[tuple[str, int, Any]], csv_rows: bool = False, errors: list[FieldError] | None = None
) -> ImportBatch:
    """Parse every row; ``errors`` are those already found (CSV cells), reported first."""
    batch = ImportBatch()
    errors = list(errors or [])
    seen: dict[tuple[str, str | None, str], tuple[str, int]] = {}

    # Names are unique per namespace: one batch (a platform admin's) may hold gpu-01 for
    # two tenants. A row without a tenant is in the caller's namespace.
    def claim(key: tuple[str, str | None, str], section: str, row: int, field: str) -> None:
        where = seen.get(key)
        if where is not None:
            other = f"row {where[1]}" if csv_rows else f"{where[0]} row {where[1]}"
            errors.append(
                FieldError(
                    row,
                    field,
                    f"{key[-1]!r} is listed twice (also {other})",
                    None if csv_rows else section,
                )
            )
        else:
            seen[key] = (section, row)

    for section, row, item in rows:
        label = None if csv_rows else section
        try:
            if section in ("devices", "vms"):
                spec = parse_device(item, SECTIONS[section], row=row, section=label)
                claim((section, spec.tenant, spec.hostname), section, row, "hostname")
                for port in spec.infiniband or ():
                    claim(
                        ("infinibands", spec.tenant, infiniband_name(spec.hostname, port.name)),
                        section,
                        row,
                        "infiniband",
                    )
                (batch.devices if section == "devices" else batch.vms).append(spec)
            elif section == "switches":
                switch = parse_switch(item, row=row, section=label)
                claim((section, switch.tenant, switch.name), section, row, "name")
                batch.switches.append(switch)
            else:
                ib = parse_infiniband(item, row=row, section=label)
                claim((section, ib.tenant, ib.name), section, row, "name")
                batch.infinibands.append(ib)
        except DocumentError as exc:
            errors.extend(exc.errors)
    if errors:
        raise bulk_input_error(errors)
    return batch


__all__ = [
    "SECTIONS",
    "DomainError",
    "ImportBatch",
    "parse_csv_import",
    "parse_import",
    "parse_json_import",
]
