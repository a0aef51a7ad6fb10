"""A request: a profile's filters applied to the caller's variables.

Absent variables (missing, null or "") skip their filter, and the skip is reported; a
filter marked ``"required": true`` makes absence an error. Values must parse; every error
names the variable (DESIGN.md "absent variables").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from api.domain.errors import BAD_INPUT, BAD_VARIABLE, DomainError
from api.domain.fields import MAX_AMOUNT, MAX_COUNT
from api.domain.limits import json_problem, parse_json
from api.domain.matching.profile import (
    CAPACITY_LABELS,
    CapacityFilter,
    MatchFilter,
    Profile,
)

REQUIREMENTS = ("nodes", "cpu", "memory_mb", "gpus", "storage_gb")


@dataclass(frozen=True)
class Requirements:
    nodes: int = 1
    cpu: int = 0
    memory_mb: int = 0
    gpus: int = 0
    storage_gb: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in REQUIREMENTS}


@dataclass(frozen=True)
class Condition:
    """A match filter with its variable's value(s): any of ``values`` must be at ``path``."""

    index: int
    path: str
    values: tuple[Any, ...]  # normalised comparison keys (see normalise)
    label: str


@dataclass(frozen=True)
class Threshold:
    """A capacity filter with its variable resolved: every amount is a per-node minimum."""

    index: int
    amounts: Mapping[str, int]  # requirement name -> amount (nodes excluded)
    nodes: int | None
    label: str


@dataclass(frozen=True)
class Skip:
    index: int
    label: str
    note: str


@dataclass
class Request:
    profile: Profile
    conditions: list[Condition] = field(default_factory=list)
    thresholds: list[Threshold] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    requirements: Requirements = field(default_factory=Requirements)
    unused_variables: list[str] = field(default_factory=list)
    canonical_variables: dict[str, Any] = field(default_factory=dict)  # parsed amounts

    def fingerprint_variables(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The variables as "the same request" compares them: amounts parsed, the rest as
        given (DESIGN.md)."""
        return {str(k): v for k, v in variables.items()} | self.canonical_variables

    @property
    def steps(self) -> list[Condition | Threshold | Skip]:
        """The filters in profile order, as the funnel reports them."""
        return sorted([*self.conditions, *self.thresholds, *self.skips], key=lambda s: s.index)


def variable_error(name: str, message: str, index: int | None = None) -> DomainError:
    extensions: dict[str, Any] = {"variable": name}
    if index is not None:
        extensions["filterIndex"] = index
    return DomainError(BAD_VARIABLE, f"variable {name!r}: {message}", extensions)


def normalise(value: Any) -> Any:
    """The comparison key of a value: numbers compare numerically, strings trimmed and
    case-insensitively (so "8" equals 8 and " NVIDIA" equals "nvidia")."""
    if isinstance(value, bool):
        return ("s", str(value).lower())
    if isinstance(value, int | float):
        return ("n", _as_float(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return ("s", text.casefold())
    return ("n", number) if math.isfinite(number) else ("s", text.casefold())


def _absent(value: Any) -> bool:
    """Missing, null, "" or an empty list, also as a JSON string ("[]" from Terraform)."""
    if isinstance(value, str):
        return not value.strip() or _any_of(value) == []
    return value is None or value == []


def _any_of(value: Any) -> list[Any]:
    """A list means any of its items; so does a string holding a JSON array (Terraform's
    ``variables`` is a map of strings, so ``jsonencode(["india", "us"])`` arrives so)."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            decoded = parse_json(value)
        except ValueError:  # not JSON, or too deep to be a list of values: a plain string
            return [value]
        if isinstance(decoded, list):
            return decoded
    return value if isinstance(value, list) else [value]


def _as_float(value: int | float) -> float:
    """A number as a float; an int beyond the float range becomes infinity (``float()``
    raises OverflowError for it), which no finite device value equals."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _number(value: Any) -> int | float | None:
    """A variable's value as a number: ints exactly (10**30 stays 10**30), else a float;
    None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        for parse in (int, float):
            try:
                return parse(text)
            except ValueError:  # also int()'s refusal of more than 4,300 digits
                continue
    return None


def _max(requirement: str) -> int:
    """The largest amount a request may ask for: what one item can hold (the device
    document's limits), so that larger numbers are refused, not silently unmatched."""
    return MAX_COUNT if requirement == "nodes" else MAX_AMOUNT


def _amount(name: str, value: Any, index: int, maximum: int) -> int:
    number = _number(value)
    if number is None or (isinstance(number, float) and math.isnan(number)):
        raise variable_error(name, f"must be a number, got {_shown(value)}", index)
    if number < 0:
        raise variable_error(name, f"must not be negative, got {_shown(value)}", index)
    if number > maximum:  # before the whole-number test: "1e400" is infinity, not a fraction
        raise variable_error(name, f"must be at most {maximum}, got {_shown(value)}", index)
    if isinstance(number, float) and not number.is_integer():
        raise variable_error(name, f"must be a whole number, got {_shown(value)}", index)
    return int(number)


def _shown(value: Any) -> str:
    """A value as an error message quotes it: at most 60 characters of its repr."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def resolve(profile: Profile, variables: Any) -> Request:
    """Apply the variables to the profile's filters, by filter index."""
    if not isinstance(variables, Mapping):
        raise DomainError(BAD_INPUT, "variables: must be an object of name: value")
    for name, value in variables.items():
        # Stored with the allocation and echoed back, unread ones too: each must be what a
        # JSON column and a JSON response can carry.
        problem = json_problem(value)
        if problem is not None:
            raise variable_error(str(name), problem)
    request = Request(profile)
    best = Requirements().as_dict() | {"nodes": 1}
    read: set[str] = set()
    for f in profile.filters:
        read.add(f.variable)
        value = variables.get(f.variable)
        label = _label(f, value)
        if _absent(value):
            if f.required:
                raise variable_error(
                    f.variable, f"is required by filter {f.index} and was not given", f.index
                )
            request.skips.append(
                Skip(f.index, label, f"variable {f.variable!r} not given: filter skipped")
            )
            continue
        if isinstance(f, MatchFilter):
            values = _any_of(value)
            for item in values:
                if isinstance(item, Mapping | list) or item is None:
                    raise variable_error(
                        f.variable,
                        f"must be a string or number (or a list of them), got {item!r}",
                        f.index,
                    )
                if isinstance(item, int | float) and not math.isfinite(_as_float(item)):
                    raise variable_error(
                        f.variable, f"must be a finite number, got {_shown(item)}", f.index
                    )
            request.conditions.append(
                Condition(f.index, f.path, tuple(normalise(v) for v in values), label)
            )
            request.canonical_variables[f.variable] = (
                sorted({str(v).strip() for v in values}) if len(values) > 1 else str(values[0])
            )
            continue
        amounts = _capacity_amounts(f, value)
        nodes = amounts.pop("nodes", None)
        if nodes is not None and nodes < 1:
            raise variable_error(
                f.variable, f"a node count must be a whole number ≥ 1, got {value!r}", f.index
            )
        for name, amount in amounts.items():
            best[name] = max(best[name], amount)
        if nodes is not None:
            best["nodes"] = max(best["nodes"], nodes)
        if f.presets is not None:  # show what the preset stands for
            parts = [f"{CAPACITY_LABELS[k]}≥{v}" for k, v in amounts.items()]
            parts += [f"requiredNoofNodes={nodes}"] if nodes is not None else []
            label = f"{label} ({', '.join(parts)})"
        request.thresholds.append(Threshold(f.index, amounts, nodes, label))
        request.canonical_variables[f.variable] = (
            value if f.presets is not None else _amount(f.variable, value, f.index, _max(f.key))
        )
    request.requirements = Requirements(**best)
    request.unused_variables = sorted(str(k) for k in variables if k not in read)
    return request


def _capacity_amounts(f: CapacityFilter, value: Any) -> dict[str, int]:
    if f.presets is None:
        return {f.key: _amount(f.variable, value, f.index, _max(f.key))}
    name = str(value).strip()
    presets = {p.casefold(): amounts for p, amounts in f.presets.items()}
    if name.casefold() not in presets:
        raise variable_error(
            f.variable, f"unknown preset {value!r} (one of: {', '.join(f.presets)})", f.index
        )
    return dict(presets[name.casefold()])


def _label(f: MatchFilter | CapacityFilter, value: Any) -> str:
    if isinstance(f, MatchFilter):
        if _absent(value):
            return f"{f.path}=({f.variable})"
        values = _any_of(value)
        shown = (
            str(values[0]).strip()
            if len(values) == 1
            else "{" + ",".join(str(v).strip() for v in values) + "}"
        )
        return f"{f.path}{'=' if len(values) == 1 else '∈'}{shown}"
    if f.presets is None:
        name = CAPACITY_LABELS[f.key]
        if _absent(value):
            return f"{name}{'=' if f.key == 'nodes' else '≥'}({f.variable})"
        return f"{name}={value}" if f.key == "nodes" else f"{name}≥{value}"
    if _absent(value):
        return f"{f.key}=({f.variable})"
    return f"{f.key}={value}"
