"""Item documents: the one JSON shape that goes in (import) and comes out (device_details).

``parse_*`` turn an untrusted mapping into a typed spec or raise ``DocumentError`` listing
*every* bad field, named with the document's own spelling (``gpus[1].vendorCode``), so a
user fixes a file in one pass. The same parsers serve GraphQL mutations (their typed input
is first turned into a document), bulk import and the NetBox sync: one validation path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.domain.errors import FieldError
from api.domain.fields import (
    HARDWARE,
    MACHINE_FACTS,
    MAX_AMOUNT,
    MAX_COUNT,
    PLACEMENT,
    PORT_FACTS,
    SWITCH_FACTS,
    VM_PLACEMENT,
    Fact,
    every_fact,
    machine_facts,
)
from api.domain.reader import Reader, kind_of
from api.domain.vocabulary import Kind, SourceSystem, Status, normalise_gpu_vendor


class DocumentError(Exception):
    def __init__(self, errors: list[FieldError]):
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Gpu:
    index: int
    vendor_code: str
    model_no: str
    memory_mb: int | None = None

    def document(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "vendorCode": self.vendor_code,
            "modelNo": self.model_no,
            "memoryMB": self.memory_mb,
        }


def port_facts_with(**given: Any) -> dict[str, Any]:
    """Every InfiniBand port fact by attribute (``fields.every_fact``)."""
    return every_fact(PORT_FACTS, given)


@dataclass(frozen=True)
class IbPort:
    """An InfiniBand port as listed inside a device document; ``facts`` holds PORT_FACTS
    by attribute."""

    name: str
    facts: dict[str, Any] = field(default_factory=port_facts_with)

    def document(self) -> dict[str, Any]:
        """The port's entry in its machine's document."""
        return {"name": self.name, **{f.key: self.facts[f.attribute] for f in PORT_FACTS}}

    @classmethod
    def from_document(cls, entry: dict[str, Any]) -> IbPort:
        """The port of a (valid, stored) machine document's entry."""
        return cls(entry["name"], {f.attribute: entry.get(f.key) for f in PORT_FACTS})


@dataclass(frozen=True)
class Source:
    system: SourceSystem = SourceSystem.MANUAL
    id: int | None = None
    url: str | None = None

    def document(self) -> dict[str, Any]:
        if self.system == SourceSystem.MANUAL:
            return {"system": "manual"}
        return {"system": self.system.value, "id": self.id, "url": self.url}


def facts_with(**given: Any) -> dict[str, Any]:
    """Every machine fact by attribute (``fields.every_fact``)."""
    return every_fact(MACHINE_FACTS, given)


@dataclass(frozen=True)
class DeviceSpec:
    """A device or a VM as a user described it (hardware facts plus ownership).

    ``facts`` holds the plain facts of api/domain/fields.py by attribute (``total_cpu``),
    every one of them. ``status``, ``tenant``, ``project`` and ``infiniband`` are None when
    the document did not mention them: an upsert then leaves the stored value alone,
    because they are operational state rather than hardware facts.
    """

    kind: Kind
    hostname: str
    status: Status | None = None
    facts: dict[str, Any] = field(default_factory=facts_with)
    gpus: tuple[Gpu, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    infiniband: tuple[IbPort, ...] | None = None
    tenant: str | None = None
    project: str | None = None
    source: Source = Source()

    # The vendor and model every GPU of the device shares (None with no GPUs, or a mix):
    # kept on the device row so that capacity by GPU model is one grouped query over
    # devices, not a join over every GPU.
    @property
    def gpu_vendor(self) -> str | None:
        return self.gpus[0].vendor_code if self._one_gpu_kind else None

    @property
    def gpu_model(self) -> str | None:
        return self.gpus[0].model_no if self._one_gpu_kind else None

    @property
    def _one_gpu_kind(self) -> bool:
        return len({(g.vendor_code, g.model_no) for g in self.gpus}) == 1


def switch_facts_with(**given: Any) -> dict[str, Any]:
    """Every switch fact by attribute (``fields.every_fact``)."""
    return every_fact(SWITCH_FACTS, given)


@dataclass(frozen=True)
class SwitchSpec:
    """A switch as a user described it; ``facts`` holds SWITCH_FACTS by attribute."""

    name: str
    status: Status | None = None
    facts: dict[str, Any] = field(default_factory=switch_facts_with)
    tags: dict[str, str] = field(default_factory=dict)
    tenant: str | None = None
    project: str | None = None
    source: Source = Source()


@dataclass(frozen=True)
class InfinibandSpec:
    """An InfiniBand port as a document of its own; ``facts`` holds PORT_FACTS by
    attribute."""

    device: str
    port: str
    status: Status | None = None
    facts: dict[str, Any] = field(default_factory=port_facts_with)
    tags: dict[str, str] = field(default_factory=dict)
    tenant: str | None = None
    project: str | None = None
    source: Source = Source()

    @property
    def name(self) -> str:
        return infiniband_name(self.device, self.port)


def infiniband_name(device: str, port: str) -> str:
    return f"{device}:{port}"


# A machine document's structure; its plain facts are api/domain/fields.py's.
MACHINE_STRUCTURE = (
    "kind",
    "hostname",
    "status",
    "gpus",
    "tags",
    "infiniband",
    "tenant",
    "project",
    "source",
)
_DEVICE_FIELDS = set(MACHINE_STRUCTURE) | {f.key for f in machine_facts(vm=False)}
_VM_FIELDS = set(MACHINE_STRUCTURE) | {f.key for f in machine_facts(vm=True)}
SWITCH_STRUCTURE = ("kind", "name", "status", "tags", "tenant", "project", "source")
_SWITCH_FIELDS = set(SWITCH_STRUCTURE) | {f.key for f in SWITCH_FACTS}
INFINIBAND_STRUCTURE = (
    "kind",
    "name",
    "device",
    "port",
    "status",
    "tags",
    "tenant",
    "project",
    "source",
)
_INFINIBAND_FIELDS = set(INFINIBAND_STRUCTURE) | {f.key for f in PORT_FACTS}
# A port listed in a machine's document: its name and facts ("status" is accepted and
# ignored: a listed port's status is its own item's).
_LISTED_PORT_FIELDS = {"name", "status"} | {f.key for f in PORT_FACTS}


def parse_device(
    raw: Any, kind: Kind = Kind.BAREMETAL, *, row: int = 1, section: str | None = None
) -> DeviceSpec:
    """Validate one device (or VM) document; raise DocumentError listing every bad field."""
    r = Reader(raw, row, section)
    r.reject_unknown(_VM_FIELDS if kind == Kind.VM else _DEVICE_FIELDS)
    r.kind(kind)
    hostname = r.string("hostname", required=True)
    gpus = _gpus(r)
    # Compare with the entries the document lists, not with the valid ones: a bad entry is
    # already reported under its own name and must not also be blamed on totalgpus.
    listed = r.raw.get("gpus")
    listed_count = len(listed) if isinstance(listed, list) else 0
    total_gpus = r.integer("totalgpus", maximum=MAX_COUNT)
    if total_gpus is None:
        total_gpus = len(gpus)
    elif listed_count and total_gpus != listed_count:
        r.fail("totalgpus", f"is {total_gpus} but {listed_count} gpus are listed")
    status = r.status()
    facts = facts_with(total_gpus=total_gpus)
    # In the document's order, so that errors are listed as the reader meets them.
    # totalgpus is read above, with the gpus it must agree with.
    _read_facts(r, facts, tuple(f for f in HARDWARE if f.attribute != "total_gpus"))
    tags = r.tags()
    _read_facts(r, facts, PLACEMENT + (VM_PLACEMENT if kind == Kind.VM else ()))
    spec = DeviceSpec(
        kind=kind,
        hostname=hostname or "",
        status=status,
        facts=facts,
        gpus=gpus,
        tags=tags,
        infiniband=_ib_ports(r),
        tenant=r.string("tenant"),
        project=r.string("project"),
        source=_source(r),
    )
    if r.errors:
        raise DocumentError(r.errors)
    return spec


def _read_facts(r: Reader, facts: dict[str, Any], which: tuple[Fact, ...]) -> None:
    for fact in which:
        value: int | str | None
        if fact.is_number:
            value = r.integer(fact.key, maximum=fact.maximum or MAX_AMOUNT)
        else:
            value = r.string(fact.key)
        facts[fact.attribute] = fact.default if value is None else value


def parse_switch(raw: Any, *, row: int = 1, section: str | None = None) -> SwitchSpec:
    r = Reader(raw, row, section)
    r.reject_unknown(_SWITCH_FIELDS)
    r.kind(Kind.SWITCH)
    name = r.string("name", required=True) or ""
    status = r.status()
    facts = switch_facts_with()
    _read_facts(r, facts, SWITCH_FACTS)
    spec = SwitchSpec(
        name=name,
        status=status,
        facts=facts,
        tags=r.tags(),
        tenant=r.string("tenant"),
        project=r.string("project"),
        source=_source(r),
    )
    if r.errors:
        raise DocumentError(r.errors)
    return spec


def parse_infiniband(raw: Any, *, row: int = 1, section: str | None = None) -> InfinibandSpec:
    r = Reader(raw, row, section)
    r.reject_unknown(_INFINIBAND_FIELDS)
    r.kind(Kind.INFINIBAND)
    device = r.string("device", required=True)
    port = r.string("port", required=True)
    name = r.string("name")
    if device and port and name and name != infiniband_name(device, port):
        r.fail(
            "name", f"must be '<device>:<port>' = {infiniband_name(device, port)!r}, got {name!r}"
        )
    status = r.status()
    facts = port_facts_with()
    _read_facts(r, facts, PORT_FACTS)
    spec = InfinibandSpec(
        device=device or "",
        port=port or "",
        status=status,
        facts=facts,
        tags=r.tags(),
        tenant=r.string("tenant"),
        project=r.string("project"),
        source=_source(r),
    )
    if r.errors:
        raise DocumentError(r.errors)
    return spec


def _source(r: Reader) -> Source:
    value = r.raw.get("source")
    if value is None:
        return Source()
    sub = r.nested(value, "source.")
    # As everywhere else: a misspelt key ("URL") is refused, not silently dropped.
    sub.reject_unknown({"system", "id", "url"})
    system_text = sub.string("system") or "manual"
    try:
        system = SourceSystem(system_text.lower())
    except ValueError:
        sub.fail("system", f"must be 'manual' or 'netbox', got {system_text!r}")
        return Source()
    source_id = sub.integer("id", maximum=2**62)
    url = sub.string("url")
    if system == SourceSystem.NETBOX and source_id is None:
        sub.fail("id", "is required when the source system is 'netbox'")
    return Source(system, source_id if system != SourceSystem.MANUAL else None, url)


def _gpus(r: Reader) -> tuple[Gpu, ...]:
    value = r.raw.get("gpus")
    if value is None:
        return ()
    if not isinstance(value, list):
        r.fail("gpus", f"must be a list of GPU objects, got {kind_of(value)}")
        return ()
    if len(value) > MAX_COUNT:
        r.fail("gpus", f"lists {len(value)} GPUs; at most {MAX_COUNT}")
        return ()
    gpus: list[Gpu] = []
    seen: set[int] = set()
    for position, item in enumerate(value):
        g = r.nested(item, f"gpus[{position}].")
        g.reject_unknown({"index", "vendorCode", "modelNo", "memoryMB"})
        index = g.integer("index", maximum=MAX_COUNT)
        index = position if index is None else index
        if index in seen:
            g.fail("index", f"GPU index {index} is listed twice")
        seen.add(index)
        vendor = g.string("vendorCode", required=True)
        model_no = g.string("modelNo", required=True)
        memory = g.integer("memoryMB")
        if vendor and model_no:
            gpus.append(Gpu(index, normalise_gpu_vendor(vendor), model_no, memory))
    return tuple(sorted(gpus, key=lambda gpu: gpu.index))


def _ib_ports(r: Reader) -> tuple[IbPort, ...] | None:
    value = r.raw.get("infiniband")
    if value is None:
        return None
    if not isinstance(value, list):
        r.fail("infiniband", f"must be a list of port objects, got {kind_of(value)}")
        return None
    ports: list[IbPort] = []
    names: set[str] = set()
    for position, item in enumerate(value):
        p = r.nested(item, f"infiniband[{position}].")
        p.reject_unknown(_LISTED_PORT_FIELDS)
        name = p.string("name", required=True)
        if name in names:
            p.fail("name", f"port {name!r} is listed twice")
        # Read before the name is checked, so a port without a name still has its other bad
        # fields reported in the same pass.
        facts = port_facts_with()
        _read_facts(p, facts, PORT_FACTS)
        if name:
            names.add(name)
            ports.append(IbPort(name, facts))
    return tuple(ports)
