"""How a backup or a restore says no: one exception, and the one-line wording of the values
and database errors it names. Every refusal is a single line, so the CLI prints it as is
(exit code 1, no traceback) and a test can pin it."""

from __future__ import annotations

from typing import Any


class BackupError(Exception):
    """A file that cannot be restored, or a database that must not be restored into."""


def show(value: Any, limit: int = 60) -> str:
    """A value in a one-line message: its repr, shortened."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def first_line(exc: BaseException) -> str:
    """A database error's own message, without SQLAlchemy's statement and links."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__
