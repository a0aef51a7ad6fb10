"""The tenancy matrix (issue #12): every root field of the schema, called with each of tenant
A's roles, aimed at tenant B's ids and names and, for comparison, at a random id or an
unknown name. Aiming at B must answer exactly as aiming at nothing (same code, same message
with the value swapped, the same kind of success), no answer may carry anything of B, and
nothing of B (or of the platform) may change.

DESIGN.md "Namespaces": names are unique within a namespace (a tenant; the platform for what
has no tenant) and a tenant never learns that a name is used in another namespace. So tenant
A creating, renaming, saving or importing under one of B's names succeeds in A's own
namespace, exactly as under an unknown name; a port's device must be in the caller's
namespace, else NOT_FOUND; a profile name resolves to the tenant's own first, then the
platform's, and a partner-admin saving a platform profile's name saves its own tenant's
profile, which shadows the platform's for that tenant only.

Fields without an id or name argument (lists, capacity views, me, …) are checked for leaks:
B's own partner-admin sees B's markers in the same answer, tenant A's roles do not.
``test_every_root_field_is_in_the_matrix`` reads the live schema (introspection over HTTP)
and fails for a field without an entry here, so a new field cannot escape the matrix.

The world (tests/support/tenancy.py) is built once and reused: a test that only added
rows of A's has them deleted, any other change has the world built anew. 370 tests per
backend; about 35 s on SQLite and 50 s on PostgreSQL on a 2-core machine under load.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from graphql import parse
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.support.server import ServerThread
from tests.support.tenancy import (
    ALPHA,
    ALPHA_LABELS,
    BETA,
    GPU_LABELS,
    ROLES,
    World,
    beta_device,
    build_world,
    differences,
    leaked,
    normalise,
    protected,
    shared_profile_funnel,
    snapshot,
    undo_additions,
    unknown_value,
)

pytestmark = pytest.mark.xdist_group("tenancy-matrix")

Values = dict[str, str]
Variables = Callable[[World, Values], dict[str, Any]]

# --- selections: enough of each type that anything of B would show ----------------------

DEVICE = """id hostname kind tenant project status serial tags site rack document
  gpus { modelNo } infiniband { name switch fabric } health { message }"""
VM = """id name host cluster tenant project status serial tags document
  infiniband { name } health { message }"""
SWITCH = "id name tenant project status managementAddress fabric site tags document"
INFINIBAND = "id name device port tenant project status fabric switch tags document"
AMOUNTS = "capacity allocatable allocated available"
GROUP = f"""key nodes nodesAllocatable wholeNodesFree utilizationPercent
  resources {{ cpu {{ {AMOUNTS} }} gpus {{ {AMOUNTS} }} }} gpuModels {{ vendor model nodes }}"""
ALLOCATION = """id environment profile tenant project variables deviceDetails releasedAt
  releasedBy devices { deviceId hostname gpus } explanation { steps { filter entered left } }"""


@dataclass(frozen=True)
class Case:
    """One request of the matrix.

    ``target`` names what the request aims at: key -> B's value, or "@beta.<item>" for one of
    B's ids, or a (B's value, stand-in) pair; without it the case is a leak check.
    ``needs`` is the least role that may make the call (read, provision, admin, platform);
    ``expect`` is the answer for a role that may ("ok", an error code, or None: anything, as
    long as B and the stand-in answer alike). A role that may not gets FORBIDDEN.
    """

    field: str
    name: str
    query: str
    variables: Variables = lambda w, v: dict(v)
    target: dict[str, Any] | None = None
    needs: str = "read"
    expect: str | None = "ok"
    b_sees: str | None = None  # what B's own partner-admin sees with the same request
    seer: str = "beta:partner-admin"  # who sees ``b_sees`` (the platform, for its own state)
    between: Callable[[World, Values], None] | None = None  # undo the first call's write
    then: Callable[[World], list[str]] | None = None  # follow-up checks after both calls
    check: Callable[[dict[str, Any]], list[str]] | None = None  # on A's answer (leak cases)

    @property
    def id(self) -> str:
        return f"{self.field}-{self.name}"


CASES: list[Case] = []


def case(field_name: str, name: str, query: str, **kw: Any) -> None:
    CASES.append(Case(field_name, name, query, **kw))


def by_id(item: str) -> dict[str, str]:
    return {"id": f"@beta.{item}"}


def named(value: str) -> dict[str, str]:
    return {"name": value}


# --- checks on leak answers: B's amounts are odd (7 GPUs a server), A's even -----------


def _totals_match_edges(data: dict[str, Any]) -> list[str]:
    connection = next(iter(data.values()))
    if connection["totalCount"] != len(connection["edges"]):
        return [f"totalCount {connection['totalCount']} but {len(connection['edges'])} edges"]
    return []


def _capacity_is_alphas(data: dict[str, Any]) -> list[str]:
    gpus = data["capacity"]["total"]["resources"]["gpus"]["capacity"]
    keys = {g["key"] for g in data["capacity"]["tenants"]}
    problems = []
    if gpus not in (24, 28):  # A's 3 servers of 8, perhaps with the platform's 4
        problems.append(f"capacity counts {gpus} GPUs: A has 24 (28 with the platform's)")
    if not keys <= {ALPHA, None}:
        problems.append(f"capacity has tenant groups {keys}")
    return problems


def _totals_are_alphas(data: dict[str, Any]) -> list[str]:
    lines = data["allocationTotals"]
    if [(t["tenant"], t["gpus"]) for t in lines] != [(ALPHA, 8)]:
        return [f"allocationTotals {lines}: A holds one allocation of 8 GPUs"]
    return []


# --- queries ------------------------------------------------------------------------------

DEVICES = f"""query($f: DeviceFilter) {{ devices(first: 100, filter: $f) {{ totalCount
  edges {{ node {{ {DEVICE} }} }} }} }}"""
case(
    "devices",
    "list",
    DEVICES,
    variables=lambda w, v: {"f": {"kind": ["BAREMETAL", "VM"]}},
    b_sees="beta-secret-serial-01",
    check=_totals_match_edges,
)
for _name, _filter in (
    ("by-tenant", lambda v: {"tenant": v["name"]}),
    ("by-hostname-prefix", lambda v: {"hostnamePrefix": v["name"]}),
    ("by-site", lambda v: {"site": [v["site"]]}),
    ("by-tag-value", lambda v: {"tags": [{"key": "marker", "value": v["tag"]}]}),
):
    case(
        "devices",
        _name,
        DEVICES,
        variables=lambda w, v, f=_filter: {"f": f(v)},
        target={
            "by-tenant": named(BETA),
            "by-hostname-prefix": named("beta-gpu"),
            "by-site": {"site": "beta-site-x"},
            "by-tag-value": {"tag": "beta-marker"},
        }[_name],
        expect="NOT_FOUND" if _name == "by-tenant" else "ok",
        b_sees="beta-secret-serial-01",
    )

VMS = f"""query($f: MachineFilter) {{ vms(first: 100, filter: $f) {{ totalCount
  edges {{ node {{ {VM} }} }} }} }}"""
case("vms", "list", VMS, b_sees="beta-secret-serial-vm", check=_totals_match_edges)
case(
    "vms",
    "by-tenant",
    VMS,
    variables=lambda w, v: {"f": {"tenant": v["name"]}},
    target=named(BETA),
    expect="NOT_FOUND",
    b_sees="beta-secret-serial-vm",
)
case(
    "vms",
    "by-hostname-prefix",
    VMS,
    variables=lambda w, v: {"f": {"hostnamePrefix": v["name"]}},
    target=named("beta-vm"),
    b_sees="beta-secret-serial-vm",
)

SWITCHES = f"""query($f: SwitchFilter) {{ switches(first: 100, filter: $f) {{ totalCount
  edges {{ node {{ {SWITCH} }} }} }} }}"""
case("switches", "list", SWITCHES, b_sees="192.0.2.77", check=_totals_match_edges)
case(
    "switches",
    "by-tenant",
    SWITCHES,
    variables=lambda w, v: {"f": {"tenant": v["name"]}},
    target=named(BETA),
    expect="NOT_FOUND",
    b_sees="192.0.2.77",
)
case(
    "switches",
    "by-fabric",
    SWITCHES,
    variables=lambda w, v: {"f": {"fabric": v["name"]}},
    target=named("beta-fabric-x"),
    b_sees="192.0.2.77",
)

INFINIBANDS = f"""query($f: InfinibandFilter) {{ infinibands(first: 100, filter: $f) {{
  totalCount edges {{ node {{ {INFINIBAND} }} }} }} }}"""
case("infinibands", "list", INFINIBANDS, b_sees="beta-leaf-1:p1", check=_totals_match_edges)
for _name, _key, _value in (
    ("by-tenant", "tenant", BETA),
    ("by-device-name", "device", "beta-gpu-01"),
    ("by-switch-device-name", "device", "beta-leaf-1"),
    ("by-switch-name", "switch", "beta-leaf-1"),
    ("by-fabric", "fabric", "beta-fabric-x"),
):
    case(
        "infinibands",
        _name,
        INFINIBANDS,
        variables=lambda w, v, k=_key: {"f": {k: v["name"]}},
        target=named(_value),
        expect="NOT_FOUND" if _key == "tenant" else "ok",
        b_sees="beta-fabric-x",
    )

NODE = f"""query($id: ID!) {{ node(id: $id) {{ id __typename ... on Device {{ {DEVICE} }}
  ... on Vm {{ {VM} }} ... on Switch {{ {SWITCH} }} ... on Infiniband {{ {INFINIBAND} }} }} }}"""
for _item, _sees in (
    ("device", "beta-secret-serial-01"),
    ("vm", "beta-secret-serial-vm"),
    ("switch", "192.0.2.77"),
    ("device_port", "beta-fabric-x"),
    ("vm_port", "beta-fabric-x"),
    ("switch_port", "beta-fabric-x"),
    ("allocation", None),
    ("tenant", None),
    ("project", None),
):
    case(
        "node",
        f"by-{_item.replace('_', '-')}-id",
        NODE,
        target=by_id(_item),
        expect="NOT_FOUND",
        b_sees=_sees,
    )

case("tenants", "list", "{ tenants { id slug name } }", b_sees=BETA)
case(
    "projects",
    "by-tenant",
    "query($name: String!) { projects(tenant: $name) { id slug name tenant } }",
    target=named(BETA),
    expect="NOT_FOUND",
    b_sees="beta-proj",
)
case("me", "list", "{ me { name role tenant } }", b_sees="beta-admin-token-name")

# --- quotas (B holds a quota and a project quota: tests/support/tenancy.py) ---------------
QUOTAS = """query($t: String, $p: String) { quotas(tenant: $t, project: $p) {
  tenant project gpuModel gpus nodes usedGpus usedNodes borrowedGpus } }"""
case("quotas", "list", QUOTAS, b_sees="beta-proj")
case("quotas", "by-tenant", QUOTAS, variables=lambda w, v: {"t": v["name"]},
     target=named(BETA), expect="NOT_FOUND", b_sees="beta-proj")  # fmt: skip
case("quotas", "by-project", QUOTAS, variables=lambda w, v: {"t": ALPHA, "p": v["name"]},
     target=named("beta-proj"), expect="NOT_FOUND")  # fmt: skip
SET_QUOTA = """mutation($i: QuotaInput!) { setQuota(input: $i) {
  tenant project gpus usedGpus } }"""
case("setQuota", "by-tenant", SET_QUOTA,
     variables=lambda w, v: {"i": {"tenant": v["name"], "project": "alpha-proj", "gpus": 1}},
     target=named(BETA), needs="admin", expect="FORBIDDEN")  # fmt: skip
case("setQuota", "by-project", SET_QUOTA,
     variables=lambda w, v: {"i": {"tenant": ALPHA, "project": v["name"], "gpus": 1}},
     target=named("beta-proj"), needs="admin", expect="NOT_FOUND")  # fmt: skip
DELETE_QUOTA = """mutation($t: String!, $p: String) { deleteQuota(tenant: $t, project: $p) {
  tenant gpus } }"""
case("deleteQuota", "by-tenant", DELETE_QUOTA,
     variables=lambda w, v: {"t": v["name"], "p": "alpha-proj"},
     target=named(BETA), needs="admin", expect="FORBIDDEN")  # fmt: skip
case("deleteQuota", "by-project", DELETE_QUOTA,
     variables=lambda w, v: {"t": ALPHA, "p": v["name"]},
     target=named("beta-proj"), needs="admin", expect="NOT_FOUND")  # fmt: skip
case("profiles", "list", "{ profiles { name labels inventoryType tenant } }", b_sees="beta-prof")

# --- webhooks (B holds a webhook with deliveries: tests/support/tenancy.py) ---------------
case("webhooks", "list", "{ webhooks { id url events tenant createdAt } }", needs="admin",
     b_sees="beta-webhook-secret-path")  # fmt: skip
case("webhookDeliveries", "by-webhook-id",
     """query($id: ID!) { webhookDeliveries(webhookId: $id) { id eventId type subject status
       attempts lastAttemptAt nextAttemptAt deliveredAt responseCode error } }""",
     target=by_id("webhook"), needs="admin", expect="NOT_FOUND",
     b_sees="io.gpuinv.allocation.created")  # fmt: skip
case("deleteWebhook", "by-id", "mutation($id: ID!) { deleteWebhook(id: $id) { id url tenant } }",
     target=by_id("webhook"), needs="admin", expect="NOT_FOUND")  # fmt: skip
case("createWebhook", "by-tenant",
     """mutation($i: CreateWebhookInput!) { createWebhook(input: $i) { id url tenant } }""",
     variables=lambda w, v: {"i": {"url": "https://hooks.alpha.example/x",
                                   "secret": "alpha-hook-secret-0123", "tenant": v["name"]}},
     target=named(BETA), needs="admin", expect="FORBIDDEN")  # fmt: skip

# --- provision requests (B has a pending request and a policy: tests/support/tenancy.py) ---
REQUEST = """id state environment tenant project reason requestedBy decidedBy note gpus
  queuePosition lastError allocation { id } explanation { steps { filter } }"""
REQUESTS = f"""query($f: ProvisionRequestFilter) {{ provisionRequests(filter: $f) {{
  {REQUEST} }} }}"""
case("provisionRequests", "list", REQUESTS, b_sees="beta-request-reason-secret")
case("provisionRequests", "by-tenant", REQUESTS,
     variables=lambda w, v: {"f": {"tenant": v["name"]}},
     target=named(BETA), expect="NOT_FOUND", b_sees="beta-request-reason-secret")  # fmt: skip
case("provisionRequests", "by-environment", REQUESTS,
     variables=lambda w, v: {"f": {"environment": v["name"]}},
     target=named("beta-request-env"), b_sees="beta-request-reason-secret")  # fmt: skip
case("provisionRequest", "by-id",
     f"query($id: ID!) {{ provisionRequest(id: $id) {{ {REQUEST} }} }}",
     target=by_id("request"), expect="NOT_FOUND")  # fmt: skip
for _decision in ("approveRequest", "rejectRequest"):
    case(_decision, "by-id",
         f"mutation($id: ID!) {{ {_decision}(id: $id, note: \"alpha\") {{ {REQUEST} }} }}",
         target=by_id("request"), expect="NOT_FOUND")  # fmt: skip
case("cancelRequest", "by-id",
     f"mutation($id: ID!) {{ cancelRequest(id: $id) {{ {REQUEST} }} }}",
     target=by_id("request"), needs="provision", expect="NOT_FOUND")  # fmt: skip
REQUEST_DEVICES = f"""mutation($i: ProvisionRequestInput!) {{ requestDevices(input: $i) {{
  {REQUEST} }} }}"""
case("requestDevices", "by-tenant", REQUEST_DEVICES,
     variables=lambda w, v: {"i": {"environment": "alpha-asks", "labels": GPU_LABELS,
                                   "variables": {"gpu": "1"}, "tenant": v["name"],
                                   "reason": "alpha"}},
     target=named(BETA), needs="provision", expect="NOT_FOUND")  # fmt: skip
# B's environment name is free in A's namespace; far in the future, so nothing is claimed.
case("requestDevices", "by-environment", REQUEST_DEVICES,
     variables=lambda w, v: {"i": {"environment": v["name"], "labels": GPU_LABELS,
                                   "variables": {"gpu": "1"}, "reason": "alpha",
                                   "startsAt": "2999-01-01T00:00:00Z"}},
     target=named("beta-request-env"), needs="provision", expect="ok",
     between=lambda w, v: _cancel(w, v["name"]))  # fmt: skip
POLICY = "tenant maxGpus projects"
case("approvalPolicy", "by-tenant",
     f"query($t: String!) {{ approvalPolicy(tenant: $t) {{ {POLICY} }} }}",
     variables=lambda w, v: {"t": v["name"]}, target=named(BETA), expect="NOT_FOUND",
     b_sees="beta-proj")  # fmt: skip
case("setApprovalPolicy", "by-tenant",
     f"mutation($i: ApprovalPolicyInput!) {{ setApprovalPolicy(input: $i) {{ {POLICY} }} }}",
     variables=lambda w, v: {"i": {"tenant": v["name"], "maxGpus": 64}},
     target=named(BETA), expect="NOT_FOUND")  # fmt: skip

ALLOCATIONS = f"""query($f: AllocationFilter) {{ allocations(first: 100, filter: $f) {{
  totalCount edges {{ node {{ {ALLOCATION} }} }} }} }}"""
case("allocations", "list", ALLOCATIONS, b_sees="beta-env-secret", check=_totals_match_edges)
case(
    "allocations",
    "by-environment",
    ALLOCATIONS,
    variables=lambda w, v: {"f": {"environment": v["name"]}},
    target=named("beta-env-secret"),
    b_sees="beta-variable-secret",
)
case(
    "allocations",
    "by-tenant",
    ALLOCATIONS,
    variables=lambda w, v: {"f": {"tenant": v["name"]}},
    target=named(BETA),
    expect="NOT_FOUND",
    b_sees="beta-variable-secret",
)
case(
    "allocationTotals",
    "list",
    "{ allocationTotals { tenant allocations devices gpus } }",
    b_sees=BETA,
    check=_totals_are_alphas,
)
case(
    "syncState",
    "list",
    "{ syncState { source leader lastError lastSummary lagSeconds } }",
    expect=None,  # the platform's sync: refused to tenants, or shown without B's names
    b_sees="beta-gpu-02",  # in the sync's error text, which platform staff read
    seer="platform",
)

CAPACITY = f"""query($site: [String!], $tenant: String) {{ capacity(site: $site, tenant: $tenant)
  {{ total {{ {GROUP} }} sites {{ {GROUP} }} tenants {{ {GROUP} }} }} }}"""
case("capacity", "list", CAPACITY, b_sees=BETA, check=_capacity_is_alphas)
case(
    "capacity",
    "by-tenant",
    CAPACITY,
    variables=lambda w, v: {"tenant": v["name"]},
    target=named(BETA),
    expect="NOT_FOUND",
    b_sees=BETA,
)
case(
    "capacity",
    "by-site",
    CAPACITY,
    variables=lambda w, v: {"site": [v["name"]]},
    target=named("beta-site-x"),
    b_sees="beta-site-x",
)
case(
    "fleetCapacity",
    "list",
    f"""{{ fleetCapacity {{ summary {{ nodes providersAnswered }} total {{ {GROUP} }}
      sources {{ name ok error }} }} }}""",
    expect="FORBIDDEN",  # the platform's view: a token bound to a tenant is refused
)

AUDIT = """query($f: AuditEventFilter) { auditEvents(first: 500, filter: $f) { totalCount
  edges { node { id at actor action objectKind objectId objectName tenant before after
  requestId } } } }"""
case("auditEvents", "list", AUDIT, b_sees="beta-request-id-0001", check=_totals_match_edges)
for _name, _key, _target in (
    ("by-tenant", "tenant", named(BETA)),
    ("by-object-id", "objectId", {"name": "@beta.device"}),
    ("by-object-name", "objectName", named("beta-gpu-01")),
    ("by-actor", "actor", named("token:beta-provisioner-token-name")),
    ("by-request-id", "requestId", named("beta-request-id-0002")),
):
    case(
        "auditEvents",
        _name,
        AUDIT,
        variables=lambda w, v, k=_key: {"f": {k: v["name"]}},
        target=_target,
        expect="NOT_FOUND" if _key == "tenant" else "ok",
        b_sees="beta-",
    )


# --- follow-up checks: B goes on as if A had never asked ---------------------------------


def _beta_imports_port(device: str, serial: str, port: str) -> Callable[[World], list[str]]:
    """B imports its device with one more port, the one A tried to add: it must work."""

    def check(world: World) -> list[str]:
        document = beta_device(device, serial)
        document["infiniband"] = [*document["infiniband"], {"name": port}]
        body = world.caller("beta:partner-admin").run(
            "mutation($d: String!) { importInventory(data: $d) { created updated unchanged } }",
            {"d": json.dumps({"devices": [document]})},
        )
        if body.get("errors") or body["data"]["importInventory"]["updated"] != 1:
            return [f"B's next import of {device} with port {port!r} answered {body}"]
        return []

    return check


def _beta_still_resolves_the_platform_profile(world: World) -> list[str]:
    filters = shared_profile_funnel(world.caller("beta:provisioner"))
    if filters != world.beta_shared_funnel:
        return [
            f"B matching with 'shared-prof' now runs {filters}, "
            f"the platform profile's funnel was {world.beta_shared_funnel}"
        ]
    return []


def _release(environment_key: str = "name") -> Callable[[World, Values], None]:
    def release(world: World, values: Values) -> None:
        world.caller("platform").ok(
            "mutation($e: String!, $t: String) { releaseAllocation(environment: $e, tenant: $t)"
            " { id } }",
            {"e": values[environment_key], "t": ALPHA},
        )

    return release


def _cancel(world: World, environment: str) -> None:
    """Withdraw A's request for ``environment`` (its place in the queue is A's to see)."""
    platform = world.caller("platform")
    found = platform.ok(
        "query($f: ProvisionRequestFilter) { provisionRequests(filter: $f) { id } }",
        {"f": {"tenant": ALPHA, "environment": environment}},
    )["provisionRequests"]
    for request in found:
        platform.ok("mutation($id: ID!) { cancelRequest(id: $id) { id } }", {"id": request["id"]})


def _rename_back(world: World, values: Values) -> None:
    world.caller("platform").ok(
        'mutation($id: ID!) { updateSwitch(id: $id, patch: {name: "alpha-leaf-1"}) { id } }',
        {"id": world.ids["alpha.switch"]},
    )


# --- mutations: devices and VMs ----------------------------------------------------------

CREATE_DEVICE = f"mutation($i: DeviceInput!) {{ createDevice(input: $i) {{ {DEVICE} }} }}"
for _name, _input, _target, _expect in (
    ("by-hostname", lambda v: {"hostname": v["name"]}, named("beta-gpu-01"), "ok"),
    (
        "by-hostname-with-port",
        lambda v: {"hostname": v["name"], "infiniband": [{"name": "ib0"}]},
        named("beta-gpu-01"),
        "ok",
    ),
    (
        "by-vm-name-with-port",
        lambda v: {"hostname": v["name"], "infiniband": [{"name": "ib0"}]},
        named("beta-vm-01"),
        "ok",
    ),
    (
        "by-switch-name-with-port",
        lambda v: {"hostname": v["name"], "infiniband": [{"name": "p1"}]},
        named("beta-leaf-1"),
        "ok",
    ),
    (
        "by-port-switch",
        lambda v: {
            "hostname": f"alpha-{v['name']}",
            "infiniband": [{"name": "ib0", "switch": v["name"]}],
        },
        named("beta-leaf-1"),
        "ok",
    ),
    (
        "by-tenant",
        lambda v: {"hostname": "alpha-new-01", "tenant": v["name"]},
        named(BETA),
        "BAD_INPUT",
    ),
    (
        "by-project",
        lambda v: {"hostname": "alpha-new-01", "project": v["name"]},
        named("beta-proj"),
        "BAD_INPUT",
    ),
):
    case(
        "createDevice",
        _name,
        CREATE_DEVICE,
        variables=lambda w, v, i=_input: {"i": i(v)},
        target=_target,
        needs="admin",
        expect=_expect,
    )

UPDATE_DEVICE = """mutation($id: ID!, $p: DevicePatch!) { updateDevice(id: $id, patch: $p) {
  id hostname tenant project rack document } }"""
case(
    "updateDevice",
    "by-id",
    UPDATE_DEVICE,
    variables=lambda w, v: {"id": v["id"], "p": {"rack": "r9"}},
    target=by_id("device2"),
    needs="admin",
    expect="NOT_FOUND",
)
for _name, _key, _value in (("by-tenant", "tenant", BETA), ("by-project", "project", "beta-proj")):
    case(
        "updateDevice",
        _name,
        UPDATE_DEVICE,
        variables=lambda w, v, k=_key: {"id": w.ids["alpha.device2"], "p": {k: v["name"]}},
        target=named(_value),
        needs="admin",
        expect="BAD_INPUT",
    )
case(
    "deleteDevice",
    "by-id",
    "mutation($id: ID!) { deleteDevice(id: $id) { id kind name } }",
    target=by_id("device2"),
    needs="admin",
    expect="NOT_FOUND",
)

CREATE_VM = f"mutation($i: VmInput!) {{ createVm(input: $i) {{ {VM} }} }}"
for _name, _input, _target, _expect in (
    ("by-name", lambda v: {"name": v["name"]}, named("beta-vm-01"), "ok"),
    (
        "by-name-with-port",
        lambda v: {"name": v["name"], "infiniband": [{"name": "ib0"}]},
        named("beta-vm-01"),
        "ok",
    ),
    (
        "by-device-name-with-port",
        lambda v: {"name": v["name"], "infiniband": [{"name": "ib0"}]},
        named("beta-gpu-01"),
        "ok",
    ),
    (
        "by-host",
        lambda v: {"name": f"alpha-{v['name']}", "host": v["name"]},
        named("beta-gpu-01"),
        "ok",
    ),
    (
        "by-tenant",
        lambda v: {"name": "alpha-vm-new", "tenant": v["name"]},
        named(BETA),
        "BAD_INPUT",
    ),
):
    case(
        "createVm",
        _name,
        CREATE_VM,
        variables=lambda w, v, i=_input: {"i": i(v)},
        target=_target,
        needs="admin",
        expect=_expect,
    )

UPDATE_VM = """mutation($id: ID!, $p: VmPatch!) { updateVm(id: $id, patch: $p) {
  id name host tenant project document } }"""
case(
    "updateVm",
    "by-id",
    UPDATE_VM,
    variables=lambda w, v: {"id": v["id"], "p": {"cluster": "c9"}},
    target=by_id("vm"),
    needs="admin",
    expect="NOT_FOUND",
)
case(
    "updateVm",
    "by-tenant",
    UPDATE_VM,
    variables=lambda w, v: {"id": w.ids["alpha.vm"], "p": {"tenant": v["name"]}},
    target=named(BETA),
    needs="admin",
    expect="BAD_INPUT",
)
case(
    "updateVm",
    "by-host",
    UPDATE_VM,
    variables=lambda w, v: {"id": w.ids["alpha.vm"], "p": {"host": v["name"]}},
    target=named("beta-gpu-01"),
    needs="admin",
)
case(
    "deleteVm",
    "by-id",
    "mutation($id: ID!) { deleteVm(id: $id) { id kind name } }",
    target=by_id("vm"),
    needs="admin",
    expect="NOT_FOUND",
)

# --- mutations: switches and InfiniBand ports --------------------------------------------

CREATE_SWITCH = f"mutation($i: SwitchInput!) {{ createSwitch(input: $i) {{ {SWITCH} }} }}"
case(
    "createSwitch",
    "by-name",
    CREATE_SWITCH,
    variables=lambda w, v: {"i": {"name": v["name"]}},
    target=named("beta-leaf-1"),
    needs="admin",
)
case(
    "createSwitch",
    "by-tenant",
    CREATE_SWITCH,
    variables=lambda w, v: {"i": {"name": "alpha-leaf-9", "tenant": v["name"]}},
    target=named(BETA),
    needs="admin",
    expect="BAD_INPUT",
)
UPDATE_SWITCH = """mutation($id: ID!, $p: SwitchPatch!) { updateSwitch(id: $id, patch: $p) {
  id name tenant project document } }"""
case(
    "updateSwitch",
    "by-id",
    UPDATE_SWITCH,
    variables=lambda w, v: {"id": v["id"], "p": {"role": "spine"}},
    target=by_id("switch"),
    needs="admin",
    expect="NOT_FOUND",
)
case(
    "updateSwitch",
    "rename-to-name",
    UPDATE_SWITCH,
    variables=lambda w, v: {"id": w.ids["alpha.switch"], "p": {"name": v["name"]}},
    target=named("beta-leaf-1"),
    needs="admin",
    between=_rename_back,
)
case(
    "updateSwitch",
    "by-tenant",
    UPDATE_SWITCH,
    variables=lambda w, v: {"id": w.ids["alpha.switch"], "p": {"tenant": v["name"]}},
    target=named(BETA),
    needs="admin",
    expect="BAD_INPUT",
)
case(
    "deleteSwitch",
    "by-id",
    "mutation($id: ID!) { deleteSwitch(id: $id) { id kind name } }",
    target=by_id("switch"),
    needs="admin",
    expect="NOT_FOUND",
)

CREATE_INFINIBAND = (
    f"mutation($i: InfinibandInput!) {{ createInfiniband(input: $i) {{ {INFINIBAND} }} }}"
)
for _name, _device, _port, _extra, _then in (
    (
        "on-device",
        "beta-gpu-02",
        "ib7",
        {},
        _beta_imports_port("beta-gpu-02", "beta-secret-serial-02", "ib7"),
    ),
    # The issue's reproduction: the port names A's own tenant, the device is B's.
    (
        "on-device-naming-own-tenant",
        "beta-gpu-02",
        "ib7",
        {"tenant": ALPHA},
        _beta_imports_port("beta-gpu-02", "beta-secret-serial-02", "ib7"),
    ),
    ("on-device-port-name", "beta-gpu-01", "ib0", {}, None),
    ("on-vm", "beta-vm-01", "ib7", {}, None),
    ("on-switch", "beta-leaf-1", "p7", {}, None),
    ("on-switch-port-name", "beta-leaf-1", "p1", {}, None),
):
    case(
        "createInfiniband",
        _name,
        CREATE_INFINIBAND,
        variables=lambda w, v, p=_port, x=_extra: {"i": {"device": v["name"], "port": p, **x}},
        target=named(_device),
        needs="admin",
        expect="NOT_FOUND",  # a port's device must be in the caller's namespace
        then=_then,
    )
case(
    "createInfiniband",
    "by-tenant",
    CREATE_INFINIBAND,
    variables=lambda w, v: {"i": {"device": "alpha-gpu-02", "port": "ib5", "tenant": v["name"]}},
    target=named(BETA),
    needs="admin",
    expect="BAD_INPUT",
)
case(
    "createInfiniband",
    "by-switch-field",
    CREATE_INFINIBAND,
    variables=lambda w, v: {
        "i": {"device": "alpha-gpu-02", "port": f"ib-{v['name']}", "switch": v["name"]}
    },
    target=named("beta-leaf-1"),
    needs="admin",
)
UPDATE_INFINIBAND = f"""mutation($id: ID!, $p: InfinibandPatch!) {{
  updateInfiniband(id: $id, patch: $p) {{ {INFINIBAND} }} }}"""
for _item in ("switch_port", "device_port"):
    case(
        "updateInfiniband",
        f"by-{_item.replace('_', '-')}-id",
        UPDATE_INFINIBAND,
        variables=lambda w, v: {"id": v["id"], "p": {"rateGbps": 1}},
        target=by_id(_item),
        needs="admin",
        expect="NOT_FOUND",
    )
case(
    "updateInfiniband",
    "by-switch-field",
    UPDATE_INFINIBAND,
    variables=lambda w, v: {"id": w.ids["alpha.switch_port"], "p": {"switch": v["name"]}},
    target=named("beta-leaf-1"),
    needs="admin",
)
case(
    "updateInfiniband",
    "by-tenant",
    UPDATE_INFINIBAND,
    variables=lambda w, v: {"id": w.ids["alpha.switch_port"], "p": {"tenant": v["name"]}},
    target=named(BETA),
    needs="admin",
    expect="BAD_INPUT",
)
case(
    "deleteInfiniband",
    "by-id",
    "mutation($id: ID!) { deleteInfiniband(id: $id) { id kind name } }",
    target=by_id("switch_port"),
    needs="admin",
    expect="NOT_FOUND",
)

# --- mutations on any item by id ----------------------------------------------------------

for _item in ("device", "device2", "vm", "switch", "device_port", "allocation"):
    case(
        "setStatus",
        f"by-{_item.replace('_', '-')}-id",
        "mutation($id: ID!) { setStatus(id: $id, status: MAINTENANCE) { __typename id status } }",
        target=by_id(_item),
        needs="admin",
        expect="NOT_FOUND",
    )
for _item in ("device", "vm", "device_port", "switch"):
    case(
        "reportHealth",
        f"by-{_item.replace('_', '-')}-id",
        """mutation($id: ID!) { reportHealth(id: $id, code: OTHER, message: "alpha probe") {
          hostname healthy health { message } alert allocations } }""",
        target=by_id(_item),
        needs="admin",
        expect="NOT_FOUND",
    )
for _item in ("vm", "device", "device_port"):
    case(
        "clearHealth",
        f"by-{_item.replace('_', '-')}-id",
        "mutation($id: ID!) { clearHealth(id: $id) { hostname healthy health { message } } }",
        target=by_id(_item),
        needs="admin",
        expect="NOT_FOUND",
    )

# --- tenants and projects -------------------------------------------------------------------

case(
    "createTenant",
    "by-slug",
    "mutation($name: String!) { createTenant(slug: $name) { id slug name } }",
    target=named(BETA),
    needs="platform",
    expect="FORBIDDEN",
)
CREATE_PROJECT = """mutation($t: String!, $s: String!) { createProject(tenant: $t, slug: $s) {
  id slug name tenant } }"""
case(
    "createProject",
    "by-tenant",
    CREATE_PROJECT,
    variables=lambda w, v: {"t": v["name"], "s": "alpha-new"},
    target=named(BETA),
    needs="admin",
    expect="NOT_FOUND",
)
case(
    "createProject",
    "by-slug",
    CREATE_PROJECT,
    variables=lambda w, v: {"t": ALPHA, "s": v["name"]},
    target=named("beta-proj"),
    needs="admin",
)

# --- importInventory: JSON and CSV ----------------------------------------------------------

IMPORT = """mutation($d: String!, $f: ImportFormat!) { importInventory(format: $f, data: $d) {
  created updated unchanged } }"""


def _json_import(document: Callable[[Values], dict[str, Any]]) -> Variables:
    return lambda w, v: {"f": "JSON", "d": json.dumps(document(v))}


def _csv_import(text: Callable[[Values], str]) -> Variables:
    return lambda w, v: {"f": "CSV", "d": text(v)}


for _name, _variables, _target, _expect, _then in (
    (
        "json-device",
        _json_import(lambda v: {"devices": [{"hostname": v["name"]}]}),
        "beta-gpu-01",
        "ok",
        None,
    ),
    (
        "json-device-with-port",
        _json_import(
            lambda v: {"devices": [{"hostname": v["name"], "infiniband": [{"name": "ib0"}]}]}
        ),
        "beta-gpu-01",
        "ok",
        None,
    ),
    (
        "json-vm",
        _json_import(lambda v: {"vms": [{"hostname": v["name"]}]}),
        "beta-vm-01",
        "ok",
        None,
    ),
    (
        "json-switch",
        _json_import(lambda v: {"switches": [{"name": v["name"]}]}),
        "beta-leaf-1",
        "ok",
        None,
    ),
    (
        "json-port-of-switch",
        _json_import(lambda v: {"infinibands": [{"device": v["name"], "port": "p1"}]}),
        "beta-leaf-1",
        None,
        None,
    ),
    (
        "json-port-on-device",
        _json_import(lambda v: {"infinibands": [{"device": v["name"], "port": "ib7"}]}),
        "beta-gpu-02",
        None,
        _beta_imports_port("beta-gpu-02", "beta-secret-serial-02", "ib7"),
    ),
    (
        "json-tenant",
        _json_import(lambda v: {"devices": [{"hostname": "alpha-new-01", "tenant": v["name"]}]}),
        BETA,
        "BAD_INPUT",
        None,
    ),
    (
        "json-project",
        _json_import(lambda v: {"devices": [{"hostname": "alpha-new-01", "project": v["name"]}]}),
        "beta-proj",
        "BAD_INPUT",
        None,
    ),
    (
        "csv-device",
        _csv_import(lambda v: f"hostname,rack\n{v['name']},r1\n"),
        "beta-gpu-01",
        "ok",
        None,
    ),
    ("csv-vm", _csv_import(lambda v: f"kind,hostname\nvm,{v['name']}\n"), "beta-vm-01", "ok", None),
    (
        "csv-switch",
        _csv_import(lambda v: f"kind,name\nswitch,{v['name']}\n"),
        "beta-leaf-1",
        "ok",
        None,
    ),
    (
        "csv-port-of-switch",
        _csv_import(lambda v: f"kind,device,port\ninfiniband,{v['name']},p1\n"),
        "beta-leaf-1",
        None,
        None,
    ),
    (
        "csv-tenant",
        _csv_import(lambda v: f"hostname,tenant\nalpha-new-01,{v['name']}\n"),
        BETA,
        "BAD_INPUT",
        None,
    ),
):
    case(
        "importInventory",
        _name,
        IMPORT,
        variables=_variables,
        target=named(_target),
        needs="admin",
        expect=_expect,
        then=_then,
    )

# --- profiles, matching, releasing ---------------------------------------------------------

SAVE_PROFILE = """mutation($name: String!, $l: JSON!) { saveProfile(name: $name, labels: $l) {
  name labels inventoryType tenant } }"""
case(
    "saveProfile",
    "by-name",
    SAVE_PROFILE,
    variables=lambda w, v: {"name": v["name"], "l": ALPHA_LABELS},
    target=named("beta-prof"),
    needs="admin",
)
case(
    "saveProfile",
    "by-platform-profile-name",
    SAVE_PROFILE,
    variables=lambda w, v: {"name": v["name"], "l": ALPHA_LABELS},
    target={"name": ("shared-prof", "nope-prof")},
    needs="admin",
    then=_beta_still_resolves_the_platform_profile,
)

MATCH = f"""mutation($i: MatchDeviceInput!) {{ matchDevice(input: $i) {{
  allocation {{ {ALLOCATION} }} deviceDetails
  explanation {{ steps {{ filter entered left note }} unusedVariables }} }} }}"""


def _match(**given: Any) -> Variables:
    """A MatchDeviceInput: inline labels for 8 GPUs unless given; v's values filled in."""

    def build(world: World, values: Values) -> dict[str, Any]:
        base: dict[str, Any] = {
            "environment": "alpha-env-2",
            "labels": GPU_LABELS,
            "variables": {"gpu": "8"},
        }
        for key, value in given.items():
            base[key] = value(values) if callable(value) else value
        return {"i": base}

    return build


def _labels(path: str) -> dict[str, str]:
    config = [
        {"type": "match", "keyInVariable": "probe", "keyInDevice": path},
        {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
    ]
    return {
        "paas.envmgmt.io/inventory": "baremetal",
        "paas.envmgmt.io/inventory.config": json.dumps(config),
    }


case(
    "matchDevice",
    "by-environment",
    MATCH,
    variables=_match(environment=lambda v: v["name"]),
    target=named("beta-env-secret"),
    needs="provision",
    between=_release(),
)
case(
    "matchDevice",
    "by-profile",
    MATCH,
    variables=_match(labels=None, profile=lambda v: v["name"], variables={"gpu": "1"}),
    target=named("beta-prof"),
    needs="provision",
    expect="NOT_FOUND",
)
case(
    "matchDevice",
    "by-tenant",
    MATCH,
    variables=_match(tenant=lambda v: v["name"]),
    target=named(BETA),
    needs="provision",
    expect="NOT_FOUND",
)
case(
    "matchDevice",
    "by-project",
    MATCH,
    variables=_match(project=lambda v: v["name"]),
    target=named("beta-proj"),
    needs="provision",
    expect="NOT_FOUND",
)
for _name, _path, _value in (
    ("by-hostname", "hostname", "beta-gpu-02"),
    ("by-tag-value", "tags.marker", "beta-marker"),
):
    case(
        "matchDevice",
        _name,
        MATCH,
        variables=_match(
            labels=_labels(_path), variables=lambda v: {"probe": v["name"], "gpu": "1"}
        ),
        target=named(_value),
        needs="provision",
        expect="NO_MATCH",  # never B's devices, and the funnel does not count them
    )

RELEASE = """mutation($name: String!, $t: String) { releaseAllocation(environment: $name,
  tenant: $t) { id environment tenant releasedAt } }"""
case(
    "releaseAllocation",
    "by-environment",
    RELEASE,
    target=named("beta-env-secret"),
    needs="provision",
)
case(
    "releaseAllocation",
    "by-tenant",
    RELEASE,
    variables=lambda w, v: {"name": "alpha-env", "t": v["name"]},
    target=named(BETA),
    needs="provision",
    expect="NOT_FOUND",
)

CASE_IDS = [c.id for c in CASES]
assert len(set(CASE_IDS)) == len(CASE_IDS), "two matrix cases share a name"

# Root fields whose arguments can name nothing of a tenant's: checked for leaks only.
NOTHING_TO_AIM = {
    "tenants": "no arguments",
    "me": "no arguments",
    "profiles": "no arguments",
    "allocationTotals": "no arguments",
    "syncState": "`source` names a sync source (netbox), which no tenant owns",
    "fleetCapacity": "`providers` names configured providers, which no tenant owns",
}


# --- running the matrix ----------------------------------------------------------------------

_WORLDS: dict[str, World] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_worlds() -> Iterator[None]:
    yield
    for world in _WORLDS.values():
        world.close()
    _WORLDS.clear()


@pytest.fixture
def world(
    server: ServerThread, engine: Engine, sessions: sessionmaker[Session], database_url: str
) -> Iterator[World]:
    """The two-tenant world, built anew only when the database no longer holds it as built
    (a previous test changed more than adding rows of A's, or another module wiped the
    database)."""
    current = _WORLDS.get(database_url)
    if current is not None:
        now = snapshot(sessions, current.tenant_ids)
        if now != current.baseline and not undo_additions(sessions, current, now):
            current.close()
            current = None
    if current is None:
        current = _WORLDS[database_url] = build_world(server, engine, sessions)
    yield current


def _outcome(body: dict[str, Any]) -> str:
    if body.get("errors"):
        return (body["errors"][0].get("extensions") or {}).get("code") or "NO_CODE"
    return "ok"


def _allowed(role: str, needs: str) -> bool:
    return {
        "read": True,
        "provision": role in ("partner-admin", "provisioner"),
        "admin": role == "partner-admin",
        "platform": False,
    }[needs]


def _expected(case: Case, role: str) -> set[str] | None:
    if _allowed(role, case.needs):
        return None if case.expect is None else {case.expect}
    # Refused by role; answering as it would on A's own items is as good.
    return {"FORBIDDEN"} | ({case.expect} if case.expect not in (None, "ok") else set())


def _resolve(world: World, target: dict[str, Any]) -> tuple[Values, Values]:
    """B's values and their stand-ins: a random id for one of B's ids, 'nope' for 'beta'."""
    mine, other = {}, {}
    for key, value in target.items():
        if isinstance(value, tuple):
            mine[key], other[key] = value
            continue
        if value.startswith("@"):
            value = world.ids[value[1:]]
        mine[key], other[key] = value, unknown_value(value)
    return mine, other


def _short(body: Any) -> str:
    text = json.dumps(body, sort_keys=True)
    return text if len(text) < 1500 else text[:1500] + "…"


def _root_field(query: str) -> str:
    operation = parse(query).definitions[0]
    return operation.selection_set.selections[0].name.value  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("role", ROLES)
def test_cross_tenant(world: World, sessions: sessionmaker[Session], role: str, case: Case) -> None:
    assert _root_field(case.query) == case.field, "the case's query calls another field"
    caller = world.caller(f"alpha:{role}")
    problems: list[str] = []
    if case.target is None:
        variables = case.variables(world, {})
        response = caller.post(case.query, variables)
        body = response.json()
        expected = _expected(case, role)
        if expected is not None and _outcome(body) not in expected:
            problems.append(
                f"answered {_outcome(body)}, expected {sorted(expected)}: {_short(body)}"
            )
        found = leaked(response.text, world.markers, [])
        if found:
            problems.append(f"B's {found} in A's answer: {_short(body)}")
        if case.check is not None and body.get("data"):
            problems += case.check(body["data"])
        if case.b_sees is not None:
            problems += _b_sees(world, case, variables)
    else:
        problems += _aim(world, case, role)
    now = snapshot(sessions, world.tenant_ids)
    changed = differences(protected(world.baseline), protected(now))
    if changed:
        problems.append("B's or the platform's rows changed:\n  " + "\n  ".join(changed[:20]))
    if not _allowed(role, case.needs):
        # Refused by role: nothing at all may have changed, A's own rows included (so the
        # follow-up checks, which B's later calls would make, have nothing to find).
        mine = differences({"alpha": world.baseline.get("alpha")}, {"alpha": now.get("alpha")})
        if mine:
            problems.append("a call refused by role changed A's rows:\n  " + "\n  ".join(mine[:20]))
    elif case.then is not None:
        problems += case.then(world)
    assert not problems, f"{role} {case.id}:\n- " + "\n- ".join(problems)


def _b_sees(world: World, case: Case, variables: dict[str, Any]) -> list[str]:
    """The harness aims where it means to: B's own partner-admin (or ``case.seer``), making
    the same call, sees the marker (unless the field may refuse everyone, ``expect=None``)."""
    as_b = world.caller(case.seer).post(case.query, variables)
    if case.b_sees in as_b.text or (case.expect is None and as_b.json().get("errors")):
        return []
    return [f"harness: B's own answer lacks {case.b_sees!r}: {as_b.text[:500]}"]


def _aim(world: World, case: Case, role: str) -> list[str]:
    """Call the field aimed at B, then at a stand-in; compare the two answers."""
    assert case.target is not None
    caller = world.caller(f"alpha:{role}")
    mine, other = _resolve(world, case.target)
    problems: list[str] = []
    if case.b_sees is not None:
        problems += _b_sees(world, case, case.variables(world, mine))
    at_b = caller.post(case.query, case.variables(world, mine))
    if case.between is not None:
        case.between(world, mine)
    at_nothing = caller.post(case.query, case.variables(world, other))
    expected = _expected(case, role)
    b_body, none_body = at_b.json(), at_nothing.json()
    if expected is not None and _outcome(none_body) not in expected:
        problems.append(
            f"aimed at nothing ({other}) it answered {_outcome(none_body)}, expected "
            f"{sorted(expected)}: {_short(none_body)}"
        )
    placeholders = {v: f"<{k}>" for k, v in mine.items()}
    stand_ins = {v: f"<{k}>" for k, v in other.items()}
    seen_b = normalise(at_b.text, placeholders, world.known_ids)
    seen_none = normalise(at_nothing.text, stand_ins, world.known_ids)
    if seen_b != seen_none:
        problems.append(
            f"aimed at B ({mine}) it answered differently:\n    at B:       {_short(b_body)}"
            f"\n    at nothing: {_short(none_body)}"
        )
    found = leaked(at_b.text, world.markers, list(mine.values()))
    if found:
        problems.append(f"B's {found} in the answer aimed at B: {_short(b_body)}")
    return problems


# --- the matrix covers the schema --------------------------------------------------------------

INTROSPECT = """{ __schema { queryType { fields { name args { name } } }
  mutationType { fields { name args { name } } } } }"""


def test_every_root_field_is_in_the_matrix(world: World) -> None:
    """Read over HTTP from the running server: a new Query or Mutation field fails here until
    it has cases, and a field that takes arguments needs a case aimed at B (or a reason)."""
    schema = world.caller("alpha:viewer").ok(INTROSPECT)["__schema"]
    fields = {
        f["name"]: [a["name"] for a in f["args"]]
        for root in ("queryType", "mutationType")
        for f in schema[root]["fields"]
    }
    covered = {c.field for c in CASES}
    aimed = {c.field for c in CASES if c.target is not None}
    missing = sorted(set(fields) - covered)
    assert not missing, f"root fields without a tenancy-matrix entry: {missing}"
    stale = sorted(covered - set(fields))
    assert not stale, f"matrix entries for fields the schema no longer has: {stale}"
    unaimed = sorted(
        name for name, args in fields.items() if args and name not in aimed | set(NOTHING_TO_AIM)
    )
    assert not unaimed, f"fields with arguments but no case aimed at B: {unaimed}"
