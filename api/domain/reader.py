"""Reading one untrusted document: typed fields out of a mapping, every error collected
and named with the document's own spelling (``gpus[1].vendorCode``), so that a user fixes
a file in one pass. api/domain/document.py reads its documents with it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from api.domain.errors import FieldError
from api.domain.fields import MAX_AMOUNT, MAX_NAME
from api.domain.vocabulary import Kind, Status

# Fields a document may carry that are output only (an exported document re-imports).
READ_ONLY = {"id", "createdAt", "updatedAt", "generation", "free", "attention"}


class Reader:
    """Reads typed fields out of one untrusted mapping, collecting every error."""

    def __init__(self, raw: Any, row: int, section: str | None, prefix: str = ""):
        self.row, self.section, self.prefix = row, section, prefix
        self.errors: list[FieldError] = []
        if not isinstance(raw, Mapping):
            self.fail("", f"must be an object, got {kind_of(raw)}")
            raw = {}
        self.raw: Mapping[str, Any] = raw

    def fail(self, key: str, message: str) -> None:
        name = f"{self.prefix}{key}" if key else (self.prefix.rstrip(".") or "(item)")
        self.errors.append(FieldError(self.row, name, message, self.section))

    def reject_unknown(self, allowed: set[str]) -> None:
        for key in self.raw:
            if key not in allowed and key not in READ_ONLY:
                hint = ", ".join(sorted(allowed))
                self.fail(str(key), f"unknown field {key!r} (known fields: {hint})")

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail(key, "is required and must be a non-empty string")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(key, f"must be a string, got {kind_of(value)} {value!r}")
            return None
        text = str(value).strip()
        if len(text) > MAX_NAME:
            self.fail(key, f"must be at most {MAX_NAME} characters, got {len(text)}")
            return None
        if any(ord(ch) < 32 for ch in text):
            self.fail(key, f"must not contain control characters: {text!r}")
            return None
        return text

    def integer(self, key: str, *, maximum: int = MAX_AMOUNT, required: bool = False) -> int | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, "is required")
            return None
        number = as_whole_number(value)
        if number is None:
            self.fail(key, f"must be a whole number, got {kind_of(value)} {value!r}")
            return None
        if number < 0:
            self.fail(key, f"must not be negative, got {number}")
            return None
        if number > maximum:
            self.fail(key, f"must be at most {maximum}, got {number}")
            return None
        return number

    def status(self) -> Status | None:
        value = self.raw.get("status")
        if value is None:
            return None
        try:
            status = Status(str(value).strip().lower())
        except ValueError:
            options = ", ".join(s.value for s in Status if s != Status.ALLOCATED)
            self.fail("status", f"unknown status {value!r} (one of: {options})")
            return None
        if status == Status.ALLOCATED:
            self.fail("status", "'allocated' is set by matchDevice, not by an import or edit")
            return None
        return status

    def tags(self) -> dict[str, str]:
        value = self.raw.get("tags")
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail("tags", f"must be an object of key: value strings, got {kind_of(value)}")
            return {}
        tags: dict[str, str] = {}
        for key, tag_value in value.items():
            key_text = str(key).strip()
            if not key_text or len(key_text) > MAX_NAME:
                self.fail(f"tags.{key}", "tag keys must be 1 to 255 characters")
            elif isinstance(tag_value, bool | int | float) and not isinstance(tag_value, bool):
                tags[key_text] = number_text(tag_value)
            elif isinstance(tag_value, str) and len(tag_value) <= MAX_NAME:
                tags[key_text] = tag_value.strip()
            elif isinstance(tag_value, str):  # else it would say "must be a string, got string"
                self.fail(
                    f"tags.{key}", f"must be at most {MAX_NAME} characters, got {len(tag_value)}"
                )
            else:
                self.fail(f"tags.{key}", f"must be a string, got {kind_of(tag_value)}")
        return tags

    def kind(self, expected: Kind) -> None:
        value = self.raw.get("kind")
        if value is not None and str(value).strip().lower() != expected.value:
            self.fail("kind", f"is {value!r} but the item is listed as {expected.value!r}")

    def nested(self, raw: Any, prefix: str) -> Reader:
        sub = Reader(raw, self.row, self.section, self.prefix + prefix)
        self.errors.extend(sub.errors)  # e.g. "must be an object"
        sub.errors = self.errors  # one shared list: every error of the item, in order
        return sub


def as_whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def number_text(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__
