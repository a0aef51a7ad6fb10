"""How the CLI prints tables: rich tables on a terminal, whole plain columns on a pipe."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


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
