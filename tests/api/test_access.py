"""Tokens and roles through the GraphQL API: who may call what, and why a call is refused."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from graphql import (
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLNamedType,
    get_named_type,
    is_composite_type,
    is_enum_type,
    is_list_type,
    is_non_null_type,
    is_required_argument,
    is_required_input_field,
)
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.db import token as token_db
from api.db.base import utcnow
from api.db.models import ApiTokenRow
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.graphql.schema import build_schema
from tests.support.api import Api, make_tenant, make_token

CREATE_DEVICE = """
mutation($input: DeviceInput!) { createDevice(input: $input) { id hostname tenant } }"""
DEVICES = "{ devices { totalCount edges { node { hostname tenant } } } }"


# --- every root field, called without a token -------------------------------------------


def _literal(type_: object) -> str:
    """A valid GraphQL literal for an argument type (required input fields only)."""
    if is_non_null_type(type_):
        return _literal(type_.of_type)  # type: ignore[attr-defined]
    if is_list_type(type_):
        return f"[{_literal(type_.of_type)}]"  # type: ignore[attr-defined]
    if is_enum_type(type_):
        return next(iter(type_.values))  # type: ignore[attr-defined]
    if isinstance(type_, GraphQLInputObjectType):
        fields = [
            f"{name}: {_literal(f.type)}"
            for name, f in type_.fields.items()
            if is_required_input_field(f)
        ]
        return "{" + ", ".join(fields) + "}"
    name = type_.name  # type: ignore[attr-defined]
    return {"Int": "1", "Float": "1.0", "Boolean": "false", "JSON": "{}"}.get(name, '"x"')


def _call(operation: str, name: str, field: GraphQLField) -> str:
    args = [
        f"{arg}: {_literal(a.type)}" for arg, a in field.args.items() if is_required_argument(a)
    ]
    named: GraphQLNamedType = get_named_type(field.type)
    selection = " { __typename }" if is_composite_type(named) else ""
    arguments = f"({', '.join(args)})" if args else ""
    return f"{operation} {{ {name}{arguments}{selection} }}"


def _root_calls() -> list[tuple[str, str]]:
    schema = build_schema()._schema
    calls = []
    for operation, root in (("query", schema.query_type), ("mutation", schema.mutation_type)):
        assert root is not None
        calls += [(name, _call(operation, name, f)) for name, f in root.fields.items()]
    return calls


ROOT_CALLS = _root_calls()


@pytest.mark.parametrize(("field", "document"), ROOT_CALLS, ids=[f for f, _ in ROOT_CALLS])
def test_every_root_field_refuses_a_call_without_a_token(
    api: Api, field: str, document: str
) -> None:
    body = api.as_(None).run(document)
    assert body["errors"], body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED", error
    assert "missing bearer token" in error["message"]
    assert (body["data"] or {}).get(field) is None


def test_root_field_list_covers_queries_and_mutations() -> None:
    names = {field for field, _ in ROOT_CALLS}
    assert {
        "devices",
        "vms",
        "switches",
        "infinibands",
        "node",
        "tenants",
        "me",
        "createDevice",
        "setStatus",
        "importInventory",
        "createTenant",
    } <= names


def test_anonymous_writes_change_nothing(api: Api) -> None:
    refused = api.as_(None).error('mutation { createTenant(slug: "sneaky") { slug } }')
    assert refused["extensions"]["code"] == "UNAUTHENTICATED"
    assert api.ok("{ tenants { slug } }")["tenants"] == []


def test_introspection_answers_without_a_token(api: Api) -> None:
    data = api.as_(None).ok("{ __schema { queryType { name } mutationType { name } } }")
    assert data["__schema"] == {
        "queryType": {"name": "Query"},
        "mutationType": {"name": "Mutation"},
    }


def test_a_valid_token_is_answered(api: Api, db: sessionmaker[Session]) -> None:
    make_tenant(db, "acme")
    viewer = api.as_(make_token(db, "viewer", "acme"))
    assert viewer.ok("{ me { role tenant } }")["me"] == {"role": "viewer", "tenant": "acme"}


# --- refused tokens -----------------------------------------------------------------------


def _refusal(api: Api) -> dict:
    """The same refusal for a read and a write (once the server's token cache has let go
    of a token revoked or expired out of band)."""
    read = api.refused_once_cache_ends(DEVICES)
    write = api.error('mutation { createTenant(slug: "t") { slug } }')
    assert read["extensions"]["code"] == write["extensions"]["code"] == "UNAUTHENTICATED"
    assert read["message"] == write["message"]
    return read


def test_unknown_token_is_unauthenticated(api: Api) -> None:
    error = _refusal(api.as_("gpuinv_this-token-was-never-issued"))
    assert error["message"] == "unknown bearer token"


def test_revoked_token_is_unauthenticated_and_says_so(api: Api, db: sessionmaker[Session]) -> None:
    with unit_of_work(db) as session:
        token, secret = token_db.create_token(
            session, cli_principal(), "viewer", None, "dashboard", None
        )
    api.as_(secret).ok(DEVICES)  # works until revoked
    with unit_of_work(db) as session:
        token_db.revoke_token(session, cli_principal(), token.id)
    error = _refusal(api.as_(secret))
    assert error["message"] == "bearer token revoked"  # a category; never the token's name


def test_expired_token_is_unauthenticated_and_names_no_token(
    api: Api, db: sessionmaker[Session]
) -> None:
    with unit_of_work(db) as session:
        token, secret = token_db.create_token(
            session, cli_principal(), "viewer", None, "short-lived", timedelta(hours=1)
        )
    api.as_(secret).ok(DEVICES)  # works until it expires
    expired = utcnow() - timedelta(minutes=5)
    with unit_of_work(db) as session:
        session.execute(
            update(ApiTokenRow).where(ApiTokenRow.id == token.id).values(expires_at=expired)
        )
    error = _refusal(api.as_(secret))
    assert error["message"] == "bearer token expired"  # not its name nor when


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Token abc", "bearer"])
def test_malformed_authorization_header_is_unauthenticated(api: Api, header: str) -> None:
    response = httpx.post(
        f"{api.url}/graphql", json={"query": DEVICES}, headers={"Authorization": header}, timeout=30
    )
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert error["message"] == "Authorization header must be 'Bearer <token>'"


def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    response = httpx.post(
        f"{api.url}/graphql",
        json={"query": "{ me { role } }"},
        headers={"Authorization": f"bearer {api.token}"},
        timeout=30,
    )
    assert response.json() == {"data": {"me": {"role": "platform-admin"}}}


# --- roles --------------------------------------------------------------------------------


@pytest.fixture
def acme_device(api: Api, db: sessionmaker[Session]) -> dict:
    make_tenant(db, "acme", "ml")
    make_tenant(db, "globex")
    return api.ok(CREATE_DEVICE, input={"hostname": "acme-01", "tenant": "acme"})["createDevice"]


WRITES = {
    "createDevice": ('mutation { createDevice(input: {hostname: "new-01"}) { id } }', {}),
    "updateDevice": (
        'mutation($id: ID!) { updateDevice(id: $id, patch: {rack: "r9"}) { id } }',
        {"id": True},
    ),
    "deleteDevice": ("mutation($id: ID!) { deleteDevice(id: $id) { id } }", {"id": True}),
    "setStatus": (
        "mutation($id: ID!) { setStatus(id: $id, status: MAINTENANCE) { id } }",
        {"id": True},
    ),
    "createSwitch": ('mutation { createSwitch(input: {name: "leaf-9"}) { id } }', {}),
    "createVm": ('mutation { createVm(input: {name: "vm-9"}) { id } }', {}),
    "createInfiniband": (
        'mutation { createInfiniband(input: {device: "acme-01", port: "ib7"}) { id } }',
        {},
    ),
    "importInventory": (
        'mutation { importInventory(data: "{\\"devices\\": [{\\"hostname\\": '
        '\\"imp-01\\"}]}") { created } }',
        {},
    ),
    "createProject": ('mutation { createProject(tenant: "acme", slug: "new") { slug } }', {}),
}


@pytest.mark.parametrize("role", ["viewer", "provisioner"])
@pytest.mark.parametrize("mutation", sorted(WRITES))
def test_viewer_and_provisioner_may_not_change_the_inventory(
    api: Api, db: sessionmaker[Session], acme_device: dict, role: str, mutation: str
) -> None:
    document, needs = WRITES[mutation]
    caller = api.as_(make_token(db, role, "acme"))
    variables = {"id": acme_device["id"]} if needs.get("id") else {}
    error = caller.error(document, **variables)
    assert error["extensions"]["code"] == "FORBIDDEN", error
    assert f"role {role!r}" in error["message"]
    after = api.ok(DEVICES)["devices"]
    assert after["edges"] == [{"node": {"hostname": "acme-01", "tenant": "acme"}}]
    status = api.ok(
        "query($id: ID!) { node(id: $id) { ... on Device { status rack } } }", id=acme_device["id"]
    )["node"]
    assert status == {"status": "AVAILABLE", "rack": None}
    assert [p["slug"] for p in api.ok('{ projects(tenant: "acme") { slug } }')["projects"]] == [
        "ml"
    ]


@pytest.mark.parametrize("role", ["viewer", "provisioner"])
def test_viewer_and_provisioner_may_read(
    api: Api, db: sessionmaker[Session], acme_device: dict, role: str
) -> None:
    caller = api.as_(make_token(db, role, "acme"))
    assert caller.ok(DEVICES)["devices"]["totalCount"] == 1


def test_partner_admin_creates_devices_in_its_own_tenant_by_default(
    api: Api, db: sessionmaker[Session], acme_device: dict
) -> None:
    partner = api.as_(make_token(db, "partner-admin", "acme"))
    created = partner.ok(CREATE_DEVICE, input={"hostname": "acme-02"})["createDevice"]
    assert created["tenant"] == "acme"
    named = partner.ok(CREATE_DEVICE, input={"hostname": "acme-03", "tenant": "acme"})
    assert named["createDevice"]["tenant"] == "acme"


def test_partner_admin_naming_another_tenant_reads_like_an_unknown_tenant(
    api: Api, db: sessionmaker[Session], acme_device: dict
) -> None:
    partner = api.as_(make_token(db, "partner-admin", "acme"))
    other = partner.error(CREATE_DEVICE, input={"hostname": "x-01", "tenant": "globex"})
    unknown = partner.error(CREATE_DEVICE, input={"hostname": "x-01", "tenant": "initech"})
    assert other["extensions"]["code"] == unknown["extensions"]["code"] == "BAD_INPUT"
    assert other["message"] == "tenant: tenant 'globex' not found"
    assert unknown["message"] == "tenant: tenant 'initech' not found"
    assert other["extensions"] == unknown["extensions"]
    assert api.ok(DEVICES)["devices"]["totalCount"] == 1


def test_partner_admin_cannot_move_its_device_to_another_tenant(
    api: Api, db: sessionmaker[Session], acme_device: dict
) -> None:
    partner = api.as_(make_token(db, "partner-admin", "acme"))
    error = partner.error(
        'mutation($id: ID!) { updateDevice(id: $id, patch: {tenant: "globex"}) { tenant } }',
        id=acme_device["id"],
    )
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["message"] == "tenant: tenant 'globex' not found"
    assert api.ok(DEVICES)["devices"]["edges"][0]["node"]["tenant"] == "acme"


def test_platform_admin_creates_devices_in_any_tenant(api: Api, acme_device: dict) -> None:
    created = api.ok(CREATE_DEVICE, input={"hostname": "g-01", "tenant": "globex"})
    assert created["createDevice"]["tenant"] == "globex"
    untenanted = api.ok(CREATE_DEVICE, input={"hostname": "spare-01"})["createDevice"]
    assert untenanted["tenant"] is None


@pytest.mark.parametrize(
    ("role", "tenant"),
    [("partner-admin", "acme"), ("viewer", "acme"), ("provisioner", "acme"), ("viewer", None)],
)
def test_only_a_platform_admin_may_create_tenants(
    api: Api, db: sessionmaker[Session], role: str, tenant: str | None
) -> None:
    make_tenant(db, "acme")
    error = api.as_(make_token(db, role, tenant)).error(
        'mutation { createTenant(slug: "initech") { slug } }'
    )
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["message"] == "only a platform-admin may create tenants"
    assert [t["slug"] for t in api.ok("{ tenants { slug } }")["tenants"]] == ["acme"]
    created = api.ok('mutation { createTenant(slug: "initech", name: "Initech") { slug name } }')[
        "createTenant"
    ]
    assert created == {"slug": "initech", "name": "Initech"}


def test_creating_an_existing_tenant_is_bad_input(api: Api) -> None:
    api.ok('mutation { createTenant(slug: "acme") { slug } }')
    error = api.error('mutation { createTenant(slug: "acme") { slug } }')
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "slug"}
    assert error["message"] == "slug: tenant 'acme' already exists"
