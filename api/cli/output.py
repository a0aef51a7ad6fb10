"""How the CLI prints: tables (rich on a terminal, whole plain columns on a pipe), the
matching funnel, and a refusal (a DomainError) as one click error, in one place for every
command module so that they all say things the same way."""

from __future__ import annotations

from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from api.domain.errors import DomainError

err = Console(stderr=True)
"""Progress, status and notes: stderr, so that stdout stays the command's result."""


def fail(exc: DomainError) -> NoReturn:
    """Exit 1 with the error's code and message, and the first rows it names (an import
    refused with many faults lists up to 19 after the first, not all of them)."""
    message = f"{exc.code}: {exc.message}"
    for problem in exc.extensions.get("errors", [])[1:20]:
        where = f"{problem.get('section', '')} row {problem['row']}".strip()
        message += f"\n  {where}, {problem['field']}: {problem['message']}"
    raise click.ClickException(message)


def print_funnel(explanation: dict[str, Any], console: Console) -> None:
    print_table(
        ("filter", "entered", "left", "note"),
        [
            (step["filter"], str(step["entered"]), str(step["left"]), step["note"] or "")
            for step in explanation["steps"]
        ],
        console,
        box=None,
    )
    if explanation.get("unusedVariables"):
        console.print(
            f"variables no filter reads: {', '.join(explanation['unusedVariables'])}",
            soft_wrap=True,  # whole on a pipe, like the table
            markup=False,
        )


def print_table(
    columns: tuple[str, ...],
    rows: list[tuple[str, ...]],
    console: Console | None = None,
    **table_options: Any,
) -> None:
    """A rich table on a terminal; otherwise (a pipe, a file) plain columns at full width,
    never cut, with upper-case headings and no box or colour, as ``kubectl get`` prints."""
    console = console or Console()
    if console.is_terminal:
        table = Table(*columns, **table_options)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    lines = [tuple(c.upper().replace(" ", "_") for c in columns), *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        text = "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        console.file.write(text.rstrip() + "\n")
    console.file.flush()
