"""Domain errors carry a stable code that the API exposes as ``extensions.code``.

Codes are part of the public contract (DESIGN.md): portals and pipelines branch on them,
so they never change meaning. Messages name the field and the value that were wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BAD_INPUT = "BAD_INPUT"
BAD_PROFILE = "BAD_PROFILE"
BAD_VARIABLE = "BAD_VARIABLE"
NO_MATCH = "NO_MATCH"
ENVIRONMENT_IN_USE = "ENVIRONMENT_IN_USE"
NOT_FOUND = "NOT_FOUND"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
CONCURRENT_UPDATE = "CONCURRENT_UPDATE"
DEVICE_ALLOCATED = "DEVICE_ALLOCATED"
QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
NOT_CONFIGURED = "NOT_CONFIGURED"  # the server lacks a setting the request needs
# The API's own, for requests refused before or around the domain.
GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
UNAVAILABLE = "UNAVAILABLE"  # the database: retry
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"  # a bug: the request id finds it in the log


@dataclass
class DomainError(Exception):
    """A refusal the caller can act on; never a bug."""

    code: str
    message: str
    extensions: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FieldError:
    """One problem in one item of a bulk input: which row, which field, what is wrong."""

    row: int
    field: str
    message: str
    section: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.row, "field": self.field, "message": self.message}
        if self.section is not None:
            out["section"] = self.section
        return out


class InvalidField(Exception):
    """One field's value refused by a rule that needs stored state (a tenant that is not
    the caller's, capacity below what is allocated, a port name taken), raised where the
    row is not known: a bulk import adds its row number (FieldError), a single mutation
    answers BAD_INPUT (``as_bad_input``). Its own type, not ValueError(field, message):
    a stray ValueError from anywhere else is then a bug, never a client's field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def as_bad_input(self) -> DomainError:
        return bad_input(f"{self.field}: {self.message}", field=self.field)


def bad_input(message: str, **extensions: Any) -> DomainError:
    return DomainError(BAD_INPUT, message, dict(extensions))


def not_found(kind: str, key: str) -> DomainError:
    # The same words for "does not exist" and "belongs to another tenant", on purpose:
    # a tenant must not learn that another tenant's item exists.
    return DomainError(NOT_FOUND, f"{kind} {key!r} not found")


def bulk_input_error(errors: list[FieldError], limit: int = 100) -> DomainError:
    """One BAD_INPUT for a whole bulk input; lists (up to ``limit``) every bad field."""
    shown = errors[:limit]
    first = shown[0]
    where = f"{first.section} row {first.row}" if first.section else f"row {first.row}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return DomainError(
        BAD_INPUT,
        f"{where}, field {first.field!r}: {first.message}{more}; nothing was written",
        {"errors": [e.as_dict() for e in shown], "errorCount": len(errors)},
    )
