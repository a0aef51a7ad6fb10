"""GraphQL fields made from the table of machine facts (api/domain/fields.py), so that a
fact declared there is a field of Device, Vm and their inputs without a line here.

The helpers add annotated fields to a class before strawberry decorates it, in the order
they are called: the schema lists fields in that order (schema.graphql)."""

from __future__ import annotations

import inspect
from typing import Any

import strawberry

from api.domain.fields import Fact


def declare(cls: type, attribute: str, annotation: Any, default: Any = None) -> None:
    """One more field on ``cls``, after those it has; ``default`` as in a class body."""
    cls.__annotations__ = {**inspect.get_annotations(cls), attribute: annotation}
    if default is not None:
        setattr(cls, attribute, default)


def output_facts(cls: type, facts: tuple[Fact, ...], *, free: bool = False) -> None:
    """The facts as fields of an output type; with ``free``, each capacity fact's free
    amount after all of them (freeCpu…)."""
    for fact in facts:
        declare(cls, fact.attribute, _output_type(fact), _named(fact.graphql))
    if free:
        for fact in facts:
            if fact.free is not None:
                declare(cls, fact.free, int, _named(free_name(fact)))


def input_facts(cls: type, facts: tuple[Fact, ...]) -> None:
    """The facts as fields of an input: each may be left out (UNSET)."""
    for fact in facts:
        annotation = int | None if fact.is_number else str | None
        declare(cls, fact.attribute, annotation, _named(fact.graphql, strawberry.UNSET))


def fact_values(row: Any, facts: tuple[Fact, ...], *, free: bool = False) -> dict[str, Any]:
    """The facts (and with ``free`` the free amounts) of an ORM row, for an output type."""
    values = {fact.attribute: getattr(row, fact.attribute) for fact in facts}
    if free:
        values |= {f.free: getattr(row, f.free) for f in facts if f.free is not None}
    return values


def _output_type(fact: Fact) -> Any:
    """A capacity is always known (0 when the document leaves it out); any other fact may
    not be."""
    if fact.is_number:
        return int if fact.default is not None else int | None
    return str | None


def free_name(fact: Fact) -> str:
    """totalMemoryMB -> freeMemoryMB."""
    return "free" + fact.graphql.removeprefix("total")


def _named(graphql: str, default: Any = None) -> Any:
    if default is None:
        return strawberry.field(name=graphql)
    return strawberry.field(name=graphql, default=default)
