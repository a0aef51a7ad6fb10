"""A GraphQL-over-HTTP request as the view accepts it, and the coded refusals of the rest.

Everything a client sends is decoded and checked here, once, before the schema sees it: so
no resolver, driver or encoder meets bytes that are not UTF-8, a body that is not a JSON
object, a number Python will not hold, nesting that would overflow the stack, or a string
that is not Unicode (a lone surrogate, which JSON's ``\\ud800`` escape can carry and which no
database driver can encode). A refusal is an HTTP 400 whose error names the place.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from cross_web import HTTPException
from strawberry.http import GraphQLRequestData

from api.domain.errors import BAD_INPUT, GRAPHQL_PARSE_FAILED

PARSE_FAILED = GRAPHQL_PARSE_FAILED

# Arrays and objects nested deeper than this are refused. Nothing in the schema nests more
# than a few levels (a device document, a profile's filters); graphql-core's value coercion
# and the JSON encoders recurse, so a limit here keeps the stack out of reach.
MAX_NESTING = 64

_FIELDS = ("query", "operationName", "variables", "extensions")


class RequestRefused(HTTPException):
    """A request the view will not run: its HTTP status, a stable code and the reason."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(status, message)
        self.code = code


def decode_json(data: bytes | str, what: str) -> Any:
    """JSON text as Python values; ``what`` names the text in refusals ("request body")."""
    if isinstance(data, bytes):
        try:  # strict: json.loads(bytes) would let UTF-8-encoded surrogates through
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            byte = data[exc.start]
            raise RequestRefused(
                PARSE_FAILED, f"{what} is not valid UTF-8 (byte 0x{byte:02x} at {exc.start})"
            ) from None

    def not_json(constant: str) -> Any:
        raise RequestRefused(
            PARSE_FAILED, f"Unable to parse {what} as JSON: {constant} is not JSON"
        )

    def finite(text: str) -> float:
        number = float(text)
        if math.isinf(number):
            shown = text if len(text) <= 40 else text[:40] + "…"
            raise RequestRefused(BAD_INPUT, f"{what}: the number {shown} is out of range")
        return number

    try:
        return json.loads(data, parse_constant=not_json, parse_float=finite)
    except json.JSONDecodeError as exc:
        raise RequestRefused(
            PARSE_FAILED,
            f"Unable to parse {what} as JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
        ) from None
    except RecursionError:
        raise RequestRefused(
            BAD_INPUT, f"{what} is nested too deeply (more than {MAX_NESTING} levels are refused)"
        ) from None
    except ValueError:  # the only other one: an integer past Python's int-string limit
        digits = sys.get_int_max_str_digits()
        raise RequestRefused(BAD_INPUT, f"{what}: a number has more than {digits} digits") from None


def graphql_request(data: Any, what: str) -> GraphQLRequestData:
    """The operation a decoded request asks for, every string in it checked."""
    if isinstance(data, list):
        raise RequestRefused(
            PARSE_FAILED, "Batching is not enabled: send one operation per request"
        )
    if not isinstance(data, dict):
        raise RequestRefused(
            PARSE_FAILED,
            f"{what} must be a JSON object with a query, got {_json_type(data)}",
        )
    _require(data, "query", str)
    _require(data, "operationName", str)
    _require(data, "variables", dict)
    _require(data, "extensions", dict)
    check_values({name: data.get(name) for name in _FIELDS})
    return GraphQLRequestData(
        query=data.get("query"),
        variables=data.get("variables"),
        operation_name=data.get("operationName"),
        extensions=data.get("extensions"),
        protocol="http",
    )


def check_values(fields: Mapping[str, Any]) -> None:
    """Refuse the first string (or object key) that is not Unicode, and the first array or
    object nested more than MAX_NESTING levels; the message names where, as
    ``variables.input.tags[2]``. Iterative, so depth costs no stack."""
    pending: list[tuple[_Path, Any, int]] = [
        ((None, name), value, 1) for name, value in fields.items()
    ]
    while pending:
        path, value, depth = pending.pop()
        if isinstance(value, str):
            _check_unicode(value, path)
        elif isinstance(value, (dict, list)):
            if depth > MAX_NESTING:
                raise RequestRefused(
                    BAD_INPUT, f"{_show(path)}: nested more than {MAX_NESTING} levels deep"
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_unicode(key, path, what="an object key")
                pending.append(((path, key), item, depth + 1))


# A path as a chain of (parent, key) pairs: built for every value, shown only on a refusal.
_Path = tuple[Any, str | int]


def _check_unicode(text: str, path: _Path, what: str = "") -> None:
    if "\x00" in text:  # JSON's \u0000: PostgreSQL's text cannot hold it, so neither do we
        where = f"{what} has " if what else ""
        raise RequestRefused(
            BAD_INPUT,
            f"{_show(path)}: {where}a NUL character (U+0000) at character "
            f"{text.index(chr(0))}, which no text column can hold",
        )
    if text.isascii():  # O(1) in CPython: most strings end here
        return
    try:
        text.encode("utf-8")  # strict: fails exactly on a surrogate (4x faster than a regex)
    except UnicodeEncodeError as exc:
        where = f"{what} has " if what else ""
        raise RequestRefused(
            BAD_INPUT,
            f"{_show(path)}: {where}a lone surrogate U+{ord(text[exc.start]):04X} at character "
            f"{exc.start}, which is not valid Unicode",
        ) from None


def _show(path: _Path) -> str:
    keys: list[str | int] = []
    node: Any = path
    while node is not None:
        node, key = node
        keys.append(key)
    shown = ""
    for key in reversed(keys):
        shown += f"[{key}]" if isinstance(key, int) else (f".{key}" if shown else key)
    return shown if len(shown) <= 120 else shown[:120] + "…"


def _require(data: dict[str, Any], name: str, kind: type) -> None:
    value = data.get(name)
    if value is not None and not isinstance(value, kind):
        expected = "a string" if kind is str else "an object"
        raise RequestRefused(
            PARSE_FAILED,
            f"The GraphQL operation's `{name}` must be {expected} or null, if provided "
            f"(got {_json_type(value)}).",
        )


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
