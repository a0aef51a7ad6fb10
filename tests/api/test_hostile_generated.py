"""Generated hostile requests (issue 12, "Done when"): every query and mutation of the live
schema, with hostile argument values, as literals and as variables, and invalid
documents; sent over HTTP to the real server on SQLite and on PostgreSQL, as a platform
admin and as a tenant's partner-admin, against a small fleet so that resolvers go deep.

Whatever the request: no 5xx, no INTERNAL_SERVER_ERROR, every error with a code.

Documents come from hypothesis-graphql (schema-driven: it picks root fields, arguments and
selections); values from tests/api/hostile.py. Seeded and repeatable: derandomize=True, no
example database. About 600 requests per backend; test_hostile_positions.py adds 1,400
more, each argument of the schema meeting each hostile value once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import graphql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries
from sqlalchemy.orm import Session, sessionmaker

from api.graphql.schema import printed_schema
from tests.support import hostile
from tests.support.api import Api
from tests.support.hostile_fleet import ROLES, Fleet, make_fleet

SCHEMA = graphql.build_schema(printed_schema())
SCALARS = hostile.custom_scalars()
QUERY_FIELDS = sorted(SCHEMA.query_type.fields)
MUTATION_FIELDS = sorted(SCHEMA.mutation_type.fields)


def one_root_field(build: Any, names: list[str], **options: Any) -> st.SearchStrategy[Any]:
    """Documents of one root field each, the field drawn first: every field of the schema
    gets its share of examples, and documents stay small (hypothesis-graphql would
    otherwise put up to 60 root fields in one, which is slow to build and to run)."""
    per_field = {name: build(SCHEMA, fields=[name], custom_scalars=SCALARS, **options)
                 for name in names}  # fmt: skip
    return st.sampled_from(names).flatmap(per_field.__getitem__)


def any_root_field(**options: Any) -> st.SearchStrategy[Any]:
    return st.one_of(
        one_root_field(queries, QUERY_FIELDS, **options),
        one_root_field(mutations, MUTATION_FIELDS, **options),
    )


def violable(root: graphql.GraphQLObjectType) -> list[str]:
    """Root fields whose arguments hypothesis-graphql's negative mode can get wrong (a
    required one, or one of a built-in scalar type)."""
    return sorted(
        name
        for name, field in root.fields.items()
        if any(
            graphql.is_non_null_type(arg.type)
            or graphql.get_named_type(arg.type).name in graphql.specified_scalar_types
            for arg in field.args.values()
        )
    )


def invalid_arguments() -> st.SearchStrategy[str]:
    return st.one_of(
        one_root_field(queries, violable(SCHEMA.query_type), mode=Mode.NEGATIVE),
        one_root_field(mutations, violable(SCHEMA.mutation_type), mode=Mode.NEGATIVE),
    )


def generated(examples: int) -> Any:
    """Seeded, repeatable and quiet: the same requests on every run, no example database;
    a failure is shrunk to the smallest request that still fails."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        # One fleet per test, shared by its examples; large strings are the point here.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


@pytest.fixture
def fleet(api: Api, db: sessionmaker[Session]) -> Iterator[Fleet]:
    made = make_fleet(api, db)
    yield made
    made.client.close()


def send(fleet: Fleet, role: str, query: str, variables: dict[str, Any] | None = None) -> None:
    fleet.send(role, query, variables or {})


# --- literals ----------------------------------------------------------------------------


@generated(150)
@given(role=st.sampled_from(ROLES), query=one_root_field(queries, QUERY_FIELDS))
def test_generated_queries_never_fail_internally(fleet: Fleet, role: str, query: str) -> None:
    send(fleet, role, query)


@generated(200)
@given(role=st.sampled_from(ROLES), query=one_root_field(mutations, MUTATION_FIELDS))
def test_generated_mutations_never_fail_internally(fleet: Fleet, role: str, query: str) -> None:
    send(fleet, role, query)


# --- invalid documents ---------------------------------------------------------------------


@st.composite
def damaged(draw: st.DrawFn, document: str) -> str:
    """A valid document cut, or with characters put in or taken out: a parse error."""
    start = draw(st.integers(0, len(document)))
    end = draw(st.integers(start, min(len(document), start + 20)))
    inserted = draw(st.sampled_from(["", "{", "}", "(", '"', "$", "\\u", "#", "@x", "..on", "..."]))
    return document[:start] + inserted + document[end:]


@generated(100)
@given(
    role=st.sampled_from(ROLES),
    query=st.one_of(invalid_arguments(), any_root_field().flatmap(damaged)),
)
def test_generated_invalid_documents_are_refused_with_a_code(
    fleet: Fleet, role: str, query: str
) -> None:
    send(fleet, role, query)


# --- variables -----------------------------------------------------------------------------


def lift_arguments(document: graphql.DocumentNode) -> tuple[str, list[Lifted]]:
    """The same operation with every argument passed as a variable: returns the new
    document and, per variable, the argument's name, type and literal value."""
    type_info = graphql.TypeInfo(SCHEMA)
    lifted: list[Lifted] = []

    class Lift(graphql.Visitor):
        def enter_argument(self, node: graphql.ArgumentNode, *_: Any) -> graphql.ArgumentNode:
            argument = type_info.get_argument()
            assert argument is not None
            variable = f"v{len(lifted)}"
            value = graphql.value_from_ast_untyped(node.value)
            lifted.append(Lifted(variable, node.name.value, argument.type, value))
            return graphql.ArgumentNode(
                name=node.name, value=graphql.VariableNode(name=graphql.NameNode(value=variable))
            )

    edited = graphql.visit(document, graphql.TypeInfoVisitor(type_info, Lift()))
    operation = edited.definitions[0]
    definitions = tuple(
        graphql.VariableDefinitionNode(
            variable=graphql.VariableNode(name=graphql.NameNode(value=each.variable)),
            type=graphql.parse_type(str(each.type)),
            directives=(),
        )
        for each in lifted
    )
    operation = graphql.OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        variable_definitions=definitions,
        directives=operation.directives,
        selection_set=operation.selection_set,
    )
    return graphql.print_ast(graphql.DocumentNode(definitions=(operation,))), lifted


@dataclass
class Lifted:
    variable: str
    argument: str
    type: Any
    value: Any


def hostile_value(draw: st.DrawFn, name: str, type_: Any, value: Any) -> Any:
    """The literal's value, or (now and then) one chosen for this argument or input field
    by name (an import's data, a profile's labels, a cursor), or one a literal cannot
    carry: JSON whose keys are not GraphQL names, numbers past a float, lists thousands
    long, strings of megabytes."""
    if isinstance(type_, graphql.GraphQLNonNull):
        type_ = type_.of_type
    if value is None:
        return None
    if isinstance(type_, graphql.GraphQLList):
        items = value if isinstance(value, list) else [value]
        if items and len(json.dumps(items[0])) < 100 and draw(st.integers(0, 9)) == 0:
            return items[:1] * 6_000  # past every list limit (of small items: a body of MBs)
        return [hostile_value(draw, name, type_.of_type, item) for item in items]
    if isinstance(type_, graphql.GraphQLInputObjectType) and isinstance(value, dict):
        return {
            key: hostile_value(draw, key, type_.fields[key].type, item)
            if key in type_.fields
            else item
            for key, item in value.items()
        }
    chosen = hostile.by_name().get(name)
    if chosen is not None and draw(st.booleans()):
        return draw(chosen)
    kind = getattr(type_, "name", None)
    if kind == "JSON" and draw(st.booleans()):
        return draw(hostile.variable_json())
    if kind in ("String", "ID") and draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(hostile.DEADLY_STRINGS))
    if kind == "Int" and draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(hostile.EDGE_INTS))
    if kind == "Float" and draw(st.booleans()):
        return draw(st.sampled_from(hostile.EDGE_FLOATS))
    return value


@generated(120)
@given(
    role=st.sampled_from(ROLES),
    document=any_root_field(print_ast=lambda d: d),
    data=st.data(),
)
def test_generated_variables_never_fail_internally(
    fleet: Fleet, role: str, document: graphql.DocumentNode, data: st.DataObject
) -> None:
    query, lifted = lift_arguments(document)
    variables = {
        each.variable: hostile_value(data.draw, each.argument, each.type, each.value)
        for each in lifted
    }
    send(fleet, role, query, variables)
