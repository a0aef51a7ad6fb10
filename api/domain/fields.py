"""The item documents' facts, declared once.

A machine's (a device's or a VM's), a switch's and an InfiniBand port's plain facts are
the document keys that go straight to a column of their own: its make, its capacity, where
it stands. Each is declared here, once, with every name it has: its document key (also its
CSV column), its attribute (on the spec, the row and the GraphQL type: the column's name)
and its GraphQL name. Parsing, the document's rendering, the write paths (one item at a
time, and the bulk import), the CSV columns and the GraphQL types and inputs read this
table, so a new fact is one entry here and its column (a model attribute and a migration):
tests/integration/test_one_more_fact.py adds one to machines and one to ports that way,
and tests/unit/test_fields.py fails when some layer has a fact the table does not.

The rest of a document is structure, not a plain fact, and is handled by name: ``id``,
``hostname`` or ``name``, ``kind``, ``status``, ``gpus``, ``tags``, ``infiniband``,
``tenant``, ``project``, ``source``; a port's ``device`` and ``port``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_NAME = 255  # characters of a name or any text fact: a column's VARCHAR(255)
MAX_COUNT = 100_000  # CPUs or GPUs in one item: generous, but stops typos like 1e12
MAX_AMOUNT = 10**15  # MB or GB: fits a BIGINT with room to spare


@dataclass(frozen=True)
class Fact:
    key: str  # in documents and CSV headers
    attribute: str  # on specs and rows, and the column
    graphql: str  # the GraphQL field
    maximum: int | None = None  # a whole number up to this; None: text
    free: str | None = None  # capacity: the column holding how much of it is free
    vm_only: bool = False

    @property
    def is_number(self) -> bool:
        return self.maximum is not None

    @property
    def default(self) -> int | None:
        """What a document that leaves it out means: no capacity, or not known."""
        return 0 if self.free is not None else None


def _text(key: str, graphql: str | None = None, *, vm_only: bool = False) -> Fact:
    return Fact(key, key, graphql or key, vm_only=vm_only)


# In the document's order: the hardware (then gpus and tags), where it stands (then
# infiniband, tenant, project, source), and where a VM runs.
HARDWARE = (
    _text("manufacturer"),
    _text("model"),
    _text("serial"),
    Fact("totalcpu", "total_cpu", "totalCpu", MAX_COUNT, "free_cpu"),
    Fact("totalmemoryMB", "total_memory_mb", "totalMemoryMB", MAX_AMOUNT, "free_memory_mb"),
    Fact("totalstorageGB", "total_storage_gb", "totalStorageGB", MAX_AMOUNT, "free_storage_gb"),
    # Also implied by the gpus listed, when left out (api/domain/document.py).
    Fact("totalgpus", "total_gpus", "totalGpus", MAX_COUNT, "free_gpus"),
)
PLACEMENT = (_text("site"), _text("location"), _text("rack"))
VM_PLACEMENT = (_text("cluster", vm_only=True), _text("host", vm_only=True))

MACHINE_FACTS = HARDWARE + PLACEMENT + VM_PLACEMENT
CAPACITY = tuple(fact for fact in MACHINE_FACTS if fact.free is not None)


# A switch's facts, in its document's order (after kind, name and status; tags, tenant,
# project and source follow).
SWITCH_FACTS = (
    _text("manufacturer"),
    _text("model"),
    _text("role"),
    _text("site"),
    Fact("managementAddress", "management_address", "managementAddress"),
    _text("fabric"),
)


# An InfiniBand port's facts: in the ``infiniband`` list of a machine's document (after
# the port's name), and in a port's own document (after kind, name, device, port and
# status; tags, tenant, project and source follow).
PORT_FACTS = (
    Fact("rateGbps", "rate_gbps", "rateGbps", MAX_COUNT),
    _text("fabric"),
    _text("switch"),
)


def every_fact(table: tuple[Fact, ...], given: dict[str, Any]) -> dict[str, Any]:
    """Every fact of ``table`` by attribute: the ``given`` ones, and the others as a
    document that leaves them out means them (``Fact.default``)."""
    unknown = set(given) - {f.attribute for f in table}
    if unknown:
        raise TypeError(f"not facts of this kind: {sorted(unknown)}")
    return {f.attribute: given.get(f.attribute, f.default) for f in table}


def machine_facts(vm: bool) -> tuple[Fact, ...]:
    """The facts a device (``vm`` False) or a VM carries."""
    return MACHINE_FACTS if vm else tuple(f for f in MACHINE_FACTS if not f.vm_only)
