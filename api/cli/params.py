"""Option values more than one command group parses (``--ttl`` of ``token create`` and of
``match``), so that both accept and refuse the same spellings with the same message."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import click

_TTL = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def ttl(_ctx: Any, _param: Any, value: str | None) -> timedelta | None:
    """A click callback: ``90m``, ``12h``, ``30d``, ``2w`` as a timedelta; None when not given."""
    if value is None:
        return None
    match = _TTL.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(
            f"{value!r}: use a positive number and a unit, e.g. 90m, 12h, 30d or 2w"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
