"""The machine, switch and port facts of api/domain/fields.py are the only plain facts
any layer has: a column, a document key or a GraphQL field of an item is either in the
table or part of the document's structure (listed here, each for a reason). A layer that
grew a fact of its own, outside the table, fails here."""

from __future__ import annotations

from api.db.models import DeviceRow, InfinibandRow, SwitchRow
from api.domain.document import (
    _DEVICE_FIELDS,
    _INFINIBAND_FIELDS,
    _LISTED_PORT_FIELDS,
    _SWITCH_FIELDS,
    _VM_FIELDS,
    INFINIBAND_STRUCTURE,
    MACHINE_STRUCTURE,
    SWITCH_STRUCTURE,
)
from api.domain.fields import CAPACITY, MACHINE_FACTS, PORT_FACTS, SWITCH_FACTS, machine_facts
from api.graphql.facts import free_name
from api.graphql.schema import build_schema

FACT_KEYS = {f.key for f in MACHINE_FACTS}

# Device columns that are not document facts: identity and structure, what allocations
# and health change, and the summaries kept for grouped queries.
COLUMNS_NOT_FACTS = {
    "id", "kind", "hostname", "status", "tags", "tenant_id", "project_id",
    "source_system", "source_id", "source_url", "generation", "created_at", "updated_at",
    "health", "healthy", "attention",  # reportHealth and the sync's flags
    "gpu_vendor", "gpu_model",  # summaries of the gpus listed
}  # fmt: skip
# GraphQL fields of Machine beyond the facts: Item's and the resolvers over the structure.
GRAPHQL_NOT_FACTS = {
    "id", "status", "tags", "generation", "createdAt", "updatedAt", "source", "tenant",
    "project", "kind", "gpus", "infiniband", "healthy", "health", "capacity", "document",
    "attention", "allocations", "hostname", "name",
}  # fmt: skip


def test_every_device_column_is_a_fact_its_free_amount_or_named_structure() -> None:
    columns = {c.name for c in DeviceRow.__table__.columns}
    facts = {f.attribute for f in MACHINE_FACTS} | {f.free for f in CAPACITY}
    assert columns - facts - COLUMNS_NOT_FACTS == set()
    assert facts - columns == set()  # and every fact has its column


def test_the_documents_known_keys_are_the_facts_and_the_structure() -> None:
    assert set(MACHINE_STRUCTURE) | {f.key for f in machine_facts(vm=False)} == _DEVICE_FIELDS
    assert {f.key for f in MACHINE_FACTS if f.vm_only} == _VM_FIELDS - _DEVICE_FIELDS


def test_graphql_machine_fields_are_the_facts_and_the_structure() -> None:
    schema = build_schema()._schema
    machine = {name for name in schema.type_map["Machine"].fields}
    vm = {name for name in schema.type_map["Vm"].fields}
    facts = {f.graphql for f in machine_facts(vm=False)} | {free_name(f) for f in CAPACITY}
    assert facts <= machine
    assert machine - facts <= GRAPHQL_NOT_FACTS
    assert vm - machine == {"name"} | {f.graphql for f in MACHINE_FACTS if f.vm_only}
    patch = set(schema.type_map["DevicePatch"].fields)
    assert {f.graphql for f in machine_facts(vm=False)} <= patch


SWITCH_COLUMNS_NOT_FACTS = {
    "id", "name", "status", "tags", "tenant_id", "project_id", "source_system", "source_id",
    "source_url", "generation", "created_at", "updated_at", "health", "healthy", "attention",
}  # fmt: skip


def test_switches_too_have_their_facts_in_the_table_alone() -> None:
    columns = {c.name for c in SwitchRow.__table__.columns}
    facts = {f.attribute for f in SWITCH_FACTS}
    assert columns - facts - SWITCH_COLUMNS_NOT_FACTS == set()
    assert facts <= columns
    assert set(SWITCH_STRUCTURE) | {f.key for f in SWITCH_FACTS} == _SWITCH_FIELDS
    schema = build_schema()._schema
    fields = set(schema.type_map["Switch"].fields)
    assert {f.graphql for f in SWITCH_FACTS} <= fields
    assert fields - {f.graphql for f in SWITCH_FACTS} <= GRAPHQL_NOT_FACTS
    assert {f.graphql for f in SWITCH_FACTS} <= set(schema.type_map["SwitchPatch"].fields)


PORT_COLUMNS_NOT_FACTS = {
    "id", "name", "device", "device_id", "port", "status", "tags", "tenant_id", "project_id",
    "source_system", "source_id", "source_url", "generation", "created_at", "updated_at",
    "health", "healthy", "attention",
}  # fmt: skip


def test_ports_too_have_their_facts_in_the_table_alone() -> None:
    """As a port's own item and as listed in its machine's document."""
    columns = {c.name for c in InfinibandRow.__table__.columns}
    facts = {f.attribute for f in PORT_FACTS}
    assert columns - facts - PORT_COLUMNS_NOT_FACTS == set()
    assert facts <= columns
    keys = {f.key for f in PORT_FACTS}
    assert set(INFINIBAND_STRUCTURE) | keys == _INFINIBAND_FIELDS
    assert _LISTED_PORT_FIELDS - keys == {"name", "status"}
    schema = build_schema()._schema
    graphql = {f.graphql for f in PORT_FACTS}
    for name in ("Infiniband", "InfinibandPatch", "IbPort", "IbPortInput"):
        fields = set(schema.type_map[name].fields)
        assert graphql <= fields, name
        assert fields - graphql <= GRAPHQL_NOT_FACTS | {"device", "port"}, name
