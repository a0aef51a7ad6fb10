"""How large, deep or long an input may be, and the checks that hold every input to it.

Each limit is far above what a real client sends and far below what breaks a part we rely
on: Python's JSON parser recurses once per nesting level (a few thousand ``[`` end in a
RecursionError), SQLite refuses an expression tree more than 1,000 deep (about that many
tag conditions) and a LIKE pattern over 50,000 bytes. Refusing earlier, with the field and
the limit named, keeps those failures from ever reaching a client as an internal error.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

# JSON nesting: a device document is 4 levels deep, a profile's filters 5; 32 is generous.
MAX_JSON_DEPTH = 32
# Values of one list filter (status, site, kind): a document can hold about 4,000 anyway
# (its token limit), and PostgreSQL's driver takes at most 65,535 parameters a query.
MAX_FILTER_VALUES = 5_000
# Tag conditions in one filter: each is an AND term of the query.
MAX_TAG_FILTERS = 50
# Digits in a JSON number: past Python's limit (4,300 unless configured; 0 is "none")
# json.loads fails with a ValueError that is not a JSONDecodeError.
MAX_DIGITS = sys.get_int_max_str_digits() or 4300
# Text compared against names (hostnamePrefix, tag keys and values): a name is at most
# 255 characters (api/domain/fields.MAX_NAME), so a longer one can only be a mistake.
MAX_FILTER_TEXT = 255


class JsonInputError(ValueError):
    """A JSON text or value this service will not take; the message says why."""


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` within limits: at most ``max_depth`` levels of nesting, and only
    finite numbers (Python's parser accepts NaN, Infinity and 1e400, which are not JSON
    and which no database column or JSON response can hold) of at most MAX_DIGITS digits.

    Raises ``json.JSONDecodeError`` for text that is not JSON and ``JsonInputError`` for
    JSON beyond the limits.
    """
    try:
        value = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_int
        )
    except RecursionError:
        # The parser recursed once per level and ran out of stack: far deeper than allowed.
        raise JsonInputError(_too_deep(max_depth)) from None
    problem = json_problem(value, max_depth)
    if problem is not None:
        raise JsonInputError(problem)
    return value


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """What makes an already-parsed JSON value unacceptable, or None.

    Walks the value with an explicit stack, not recursion, so that a value nested deeper
    than the interpreter's recursion limit is measured instead of crashing the walk.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list):
            if depth > max_depth:
                return _too_deep(max_depth)
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            return f"numbers must be finite, got {item!r}"
    return None


def _too_deep(max_depth: int) -> str:
    return f"nested more than {max_depth} levels deep"


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(f"numbers must be finite, got {name}")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise JsonInputError(f"numbers must have at most {MAX_DIGITS} digits, got {len(text)}")
    return int(text)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonInputError(f"numbers must be finite, got {text[:40]}")
    return number
