"""The two-tenant world of the tenancy matrix (tests/api/test_tenancy_matrix.py).

Tenant A (``tenant-alpha``) and tenant B (``tenant-beta``) each hold a project, devices, a
VM, a switch, InfiniBand ports, a saved profile, an active allocation and audit events; the
platform holds a device and a profile without a tenant, and a sync state. The platform's
device is the shared pool, and B holds a slice of it too. Everything of B
carries strings that A's requests never send (``MARKERS``), so "nothing of B in an answer"
is a plain substring test over the response text.

B also has a webhook, with deliveries of its events (written straight to the database: the
matrix's server has no GPUINV_SECRET_KEY, so it runs no dispatcher and A's createWebhook
is refused after the checks of who may create what).

The world is built once through the real API (B's items by B's own partner-admin and
provisioner, with request ids of their own) and kept between tests while the database still
holds exactly what was built: a test that changed anything (say, A created an item) makes
the next test build it anew. ``snapshot`` reads every row straight from the database.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import tenant as tenant_db
from api.db import token as token_db
from api.db import webhook as webhook_db
from api.db.base import utcnow
from api.db.models import (
    AllocationDeviceRow,
    AllocationRow,
    ApprovalPolicyRow,
    AuditEventRow,
    DeviceRow,
    EventRow,
    GpuRow,
    InfinibandRow,
    ProfileRow,
    ProjectRow,
    ProvisionRequestRow,
    QuotaRow,
    SwitchRow,
    SyncStateRow,
    TenantRow,
    WebhookDeliveryRow,
    WebhookRow,
)
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from sync import reconcile
from tests.support.database import wipe
from tests.support.server import ServerThread

ALPHA, BETA = "tenant-alpha", "tenant-beta"
ROLES = ("partner-admin", "provisioner", "viewer")

# Strings only B's items carry (with B's ids, added when the world is built). A request
# that aims at B sends some of them; the others must never come back to A.
MARKERS = (
    BETA,
    "beta-proj",
    "beta-gpu-01",
    "beta-gpu-02",
    "beta-vm-01",
    "beta-leaf-1",
    "beta-gpu-01:ib0",
    "beta-gpu-02:ib0",
    "beta-vm-01:ib0",
    "beta-leaf-1:p1",
    "beta-secret-serial-01",
    "beta-secret-serial-02",
    "beta-secret-serial-vm",
    "beta-marker",
    "beta-location-x",
    "beta-site-x",
    "beta-rack-x",
    "beta-fabric-x",
    "beta-cluster-x",
    "192.0.2.77",  # B's switch's management address (TEST-NET-1: a string, never dialled)
    "beta-prof",
    "betaSecretVariable",
    "beta-env-secret",
    "beta-pool-env-secret",
    "beta-variable-secret",
    "beta-health-note",
    "beta-admin-token-name",
    "beta-provisioner-token-name",
    "beta-request-id-0001",
    "beta-request-id-0002",
    "beta-webhook-secret-path",
    "beta-request-env",
    "beta-request-reason-secret",
)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")

GPU_CONFIG = json.dumps(
    [{"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"}]
)
GPU_LABELS = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": GPU_CONFIG,
}
# The platform's profile filters on the GPU vendor; A's profile of the same name (saved by
# the matrix) on a tag instead, so that which one a match resolved is visible in its funnel.
SHARED_LABELS = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [
            {"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"},
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        ]
    ),
}
ALPHA_LABELS = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [
            {"type": "match", "keyInVariable": "zone", "keyInDevice": "tags.location"},
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        ]
    ),
}
BETA_LABELS = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [
            {"type": "match", "keyInVariable": "betaSecretVariable", "keyInDevice": "tags.marker"},
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        ]
    ),
}

# A slice of GPUs on a site's servers: B's way to the platform's pool server.
POOL_LABELS = {
    "paas.envmgmt.io/inventory": "vcluster",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [
            {"type": "match", "keyInVariable": "site", "keyInDevice": "site"},
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        ]
    ),
}

MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) {
  allocation { id environment } explanation { steps { filter entered left } } } }"""
IMPORT = "mutation($d: String!) { importInventory(data: $d) { created updated unchanged } }"
SAVE_PROFILE = "mutation($n: String!, $l: JSON!) { saveProfile(name: $n, labels: $l) { tenant } }"


def beta_device(hostname: str, serial: str) -> dict[str, Any]:
    """B's server document: B's import in the world, and again in B's follow-up imports."""
    return {
        "hostname": hostname,
        "serial": serial,
        "manufacturer": "NVIDIA",
        "model": "DGX H100",
        "totalcpu": 77,
        "totalmemoryMB": 777000,
        "totalstorageGB": 7700,
        "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100-SXM5-80GB"}] * 7,
        "tags": {"marker": "beta-marker", "location": "beta-location-x"},
        "site": "beta-site-x",
        "rack": "beta-rack-x",
        "project": "beta-proj",
        "infiniband": [
            {"name": "ib0", "rateGbps": 400, "fabric": "beta-fabric-x", "switch": "beta-leaf-1"}
        ],
    }


BETA_INVENTORY = {
    "devices": [
        beta_device("beta-gpu-01", "beta-secret-serial-01"),
        beta_device("beta-gpu-02", "beta-secret-serial-02"),
    ],
    "vms": [
        {
            "hostname": "beta-vm-01",
            "serial": "beta-secret-serial-vm",
            "cluster": "beta-cluster-x",
            "host": "beta-gpu-01",
            "totalcpu": 7,
            "tags": {"marker": "beta-marker"},
            "infiniband": [{"name": "ib0", "fabric": "beta-fabric-x"}],
        }
    ],
    "switches": [
        {
            "name": "beta-leaf-1",
            "role": "leaf",
            "site": "beta-site-x",
            "managementAddress": "192.0.2.77",
            "fabric": "beta-fabric-x",
            "tags": {"marker": "beta-marker"},
        }
    ],
    "infinibands": [{"device": "beta-leaf-1", "port": "p1", "fabric": "beta-fabric-x"}],
}


def _alpha_device(hostname: str) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "serial": f"{hostname}-serial",
        "totalcpu": 64,
        "totalmemoryMB": 512000,
        "totalstorageGB": 4000,
        "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100-SXM5-80GB"}] * 8,
        "tags": {"location": "alpha-zone"},
        "site": "alpha-site",
        "project": "alpha-proj",
        "infiniband": [{"name": "ib0", "rateGbps": 400, "fabric": "alpha-fabric"}],
    }


ALPHA_INVENTORY = {
    "devices": [_alpha_device(f"alpha-gpu-0{n}") for n in (1, 2, 3)],
    "vms": [
        {
            "hostname": "alpha-vm-01",
            "cluster": "alpha-cluster",
            "host": "alpha-gpu-01",
            "infiniband": [{"name": "ib0"}],
        }
    ],
    "switches": [{"name": "alpha-leaf-1", "role": "leaf", "fabric": "alpha-fabric"}],
    "infinibands": [{"device": "alpha-leaf-1", "port": "p1", "fabric": "alpha-fabric"}],
}
PLATFORM_INVENTORY = {
    "devices": [
        {
            "hostname": "plat-gpu-01",
            "totalcpu": 32,
            "gpus": [{"vendorCode": "NVIDIA", "modelNo": "L40S"}] * 4,
            "site": "plat-site",
        }
    ]
}
# Owners of rows in a snapshot; anything not A's is what A must never change.
A_OWNER = "alpha"


class Caller:
    """One bearer token over one kept-alive HTTP connection to the real server."""

    def __init__(self, client: httpx.Client, token: str, label: str):
        self.client, self.token, self.label = client, token, label

    def post(
        self, query: str, variables: dict[str, Any] | None = None, request_id: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        if request_id:
            headers["X-Request-Id"] = request_id
        response = self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, (
            f"{self.label}: HTTP {response.status_code}: {response.text}"
        )
        return response

    def run(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.post(query, variables, **kw).json()

    def ok(self, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        body = self.run(query, variables, **kw)
        assert not body.get("errors"), f"{self.label}: {body['errors']}"
        return body["data"]


@dataclass
class World:
    url: str
    client: httpx.Client
    callers: dict[
        str, Caller
    ]  # "platform", "alpha:<role>", "beta:partner-admin", "beta:provisioner"
    ids: dict[str, str]  # "beta.device", "alpha.switch", ... (see _ids)
    tenant_ids: dict[str, str]  # "alpha"/"beta" -> tenant id
    markers: frozenset[str] = frozenset()
    baseline: dict[str, Any] = field(default_factory=dict)
    known_ids: frozenset[str] = frozenset()  # every id of the world as built
    beta_shared_funnel: list[str] = field(default_factory=list)
    audit_high_water: int = 0  # the last audit event of the world as built

    def caller(self, who: str) -> Caller:
        return self.callers[who]

    def close(self) -> None:
        self.client.close()


def _tokens(sessions: sessionmaker[Session]) -> dict[str, str]:
    """Tenants, projects and every token, in one transaction at the server's own shell."""
    who = cli_principal()
    wanted = [("platform", "platform-admin", None, "matrix-platform-admin")]
    wanted += [(f"alpha:{role}", role, ALPHA, f"alpha-{role}-token") for role in ROLES]
    wanted += [
        ("beta:partner-admin", "partner-admin", BETA, "beta-admin-token-name"),
        ("beta:provisioner", "provisioner", BETA, "beta-provisioner-token-name"),
    ]
    with unit_of_work(sessions) as session:
        tenant_db.create_tenant(session, who, ALPHA, "Alpha Cloud")
        tenant_db.create_project(session, who, ALPHA, "alpha-proj", None)
        tenant_db.create_tenant(session, who, BETA, "Beta Cloud")
        tenant_db.create_project(session, who, BETA, "beta-proj", None)
        return {
            key: token_db.create_token(session, who, role, tenant, name, None)[1]
            for key, role, tenant, name in wanted
        }


def build_world(server: ServerThread, engine: Engine, sessions: sessionmaker[Session]) -> World:
    wipe(engine)
    server.app.state.live_index.reset()  # the wipe bypassed the change feed
    secrets = _tokens(sessions)
    client = httpx.Client(base_url=server.url, timeout=60)
    callers = {key: Caller(client, secret, key) for key, secret in secrets.items()}
    platform, b_admin = callers["platform"], callers["beta:partner-admin"]
    a_admin = callers["alpha:partner-admin"]

    platform.ok(IMPORT, {"d": json.dumps(PLATFORM_INVENTORY)})
    platform.ok(SAVE_PROFILE, {"n": "shared-prof", "l": SHARED_LABELS})

    b_admin.ok(IMPORT, {"d": json.dumps(BETA_INVENTORY)}, request_id="beta-request-id-0001")
    assert b_admin.ok(SAVE_PROFILE, {"n": "beta-prof", "l": BETA_LABELS})["saveProfile"] == {
        "tenant": BETA
    }
    a_admin.ok(IMPORT, {"d": json.dumps(ALPHA_INVENTORY)})
    assert a_admin.ok(SAVE_PROFILE, {"n": "alpha-prof", "l": ALPHA_LABELS})["saveProfile"] == {
        "tenant": ALPHA
    }

    with sessions() as session:
        ids = _ids(session)
    ids["beta.webhook"] = _beta_webhook(sessions)
    b_admin.ok(
        'mutation($id: ID!) { reportHealth(id: $id, code: OTHER, message: "beta-health-note") '
        "{ healthy } }",
        {"id": ids["beta.vm"]},
        request_id="beta-request-id-0001",
    )
    b_match = callers["beta:provisioner"].ok(
        MATCH,
        {
            "i": {
                "environment": "beta-env-secret",
                "profile": "beta-prof",
                "variables": {
                    "betaSecretVariable": "beta-marker",
                    "gpu": "7",
                    "note": "beta-variable-secret",
                },
            }
        },
        request_id="beta-request-id-0002",
    )["matchDevice"]
    # B also holds a slice of the platform's shared pool server: A reads that server (its
    # document, its free GPUs) and must never learn who holds the rest (DESIGN.md "The pool").
    pool_slice = callers["beta:provisioner"].ok(
        MATCH,
        {"i": {"environment": "beta-pool-env-secret", "labels": POOL_LABELS,
               "variables": {"site": "plat-site", "gpu": "1"}}},
    )["matchDevice"]  # fmt: skip
    assert pool_slice["allocation"]["environment"] == "beta-pool-env-secret"
    callers["alpha:provisioner"].ok(
        MATCH,
        {"i": {"environment": "alpha-env", "profile": "alpha-prof", "variables": {"gpu": "8"}}},
    )
    ids["beta.allocation"] = b_match["allocation"]["id"]
    with sessions() as session:
        ids["alpha.allocation"] = session.scalar(
            select(AllocationRow.id).where(AllocationRow.environment == "alpha-env")
        )
    webhook_db.fan_out(sessions, utcnow())  # B's webhook's deliveries of B's events
    # B's quotas: its tenant's (by the platform) and its project's (by B's partner-admin).
    set_quota = "mutation($i: QuotaInput!) { setQuota(input: $i) { tenant } }"
    platform.ok(set_quota, {"i": {"tenant": BETA, "gpus": 97, "nodes": 9}})
    b_admin.ok(set_quota, {"i": {"tenant": BETA, "project": "beta-proj", "gpus": 7}})
    # B's approval policy, and a request of B's waiting for approval (7 GPUs, above it).
    b_admin.ok(
        "mutation($i: ApprovalPolicyInput!) { setApprovalPolicy(input: $i) { tenant } }",
        {"i": {"tenant": BETA, "maxGpus": 3, "projects": ["beta-proj"]}},
    )
    ids["beta.request"] = callers["beta:provisioner"].ok(
        "mutation($i: ProvisionRequestInput!) { requestDevices(input: $i) { id state } }",
        {"i": {"environment": "beta-request-env", "profile": "beta-prof",
               "variables": {"betaSecretVariable": "beta-marker", "gpu": "7", "note": "n"},
               "reason": "beta-request-reason-secret"}},
    )["requestDevices"]["id"]  # fmt: skip
    # The platform's NetBox sync last failed on one of B's devices, as reconcile words it
    # ("<kind> <key> (<action>): <error>"); syncState shows that error.
    reconcile.record_outcome(
        sessions, datetime.now(UTC), error="baremetal 'beta-gpu-02' (update): NetBox answered 502"
    )
    tenant_ids = {"alpha": ids["alpha.tenant"], "beta": ids["beta.tenant"]}
    world = World(server.url, client, callers, ids, tenant_ids)
    world.beta_shared_funnel = shared_profile_funnel(callers["beta:provisioner"])
    world.baseline = snapshot(sessions, tenant_ids)
    with sessions() as session:
        world.audit_high_water = session.scalar(select(func.max(AuditEventRow.id))) or 0
    beta_ids = {
        row["id"]
        for rows in world.baseline["beta"].values()
        if isinstance(rows, list)
        for row in rows
        if isinstance(row.get("id"), str)
    }
    assert {ids[k] for k in ids if k.startswith("beta.")} <= beta_ids
    world.markers = frozenset(MARKERS) | beta_ids
    world.known_ids = frozenset(
        row["id"]
        for owner in world.baseline.values()
        for rows in owner.values()
        if isinstance(rows, list)
        for row in rows
        if isinstance(row.get("id"), str)
    )
    return world


def _beta_webhook(sessions: sessionmaker[Session]) -> str:
    """B's webhook, made as the service makes it, with a key the server does not have."""
    given = webhook_db.WebhookInput(
        "https://hooks.beta.example/beta-webhook-secret-path", "beta-hook-secret-0123456789",
        tenant=BETA,
    )  # fmt: skip
    with unit_of_work(sessions) as session:
        key = Fernet.generate_key().decode()
        return webhook_db.create_webhook(session, cli_principal(), given, key, False).id


def _ids(session: Session) -> dict[str, str]:
    def one(query: Any) -> str:
        found = session.scalar(query)
        assert found is not None, f"the world lacks {query}"
        return found

    def machine(hostname: str, kind: str) -> str:
        return one(
            select(DeviceRow.id).where(DeviceRow.hostname == hostname, DeviceRow.kind == kind)
        )

    def port(name: str) -> str:
        return one(select(InfinibandRow.id).where(InfinibandRow.name == name))

    ids: dict[str, str] = {}
    for t in ("alpha", "beta"):
        ids[f"{t}.tenant"] = one(select(TenantRow.id).where(TenantRow.slug == f"tenant-{t}"))
        ids[f"{t}.project"] = one(select(ProjectRow.id).where(ProjectRow.slug == f"{t}-proj"))
        ids[f"{t}.device"] = machine(f"{t}-gpu-01", "baremetal")
        ids[f"{t}.device2"] = machine(f"{t}-gpu-02", "baremetal")
        ids[f"{t}.vm"] = machine(f"{t}-vm-01", "vm")
        ids[f"{t}.switch"] = one(select(SwitchRow.id).where(SwitchRow.name == f"{t}-leaf-1"))
        ids[f"{t}.device_port"] = port(f"{t}-gpu-01:ib0")
        ids[f"{t}.vm_port"] = port(f"{t}-vm-01:ib0")
        ids[f"{t}.switch_port"] = port(f"{t}-leaf-1:p1")
    return ids


# --- snapshots --------------------------------------------------------------------------

_OWNED = (
    ProjectRow,
    DeviceRow,
    InfinibandRow,
    SwitchRow,
    ProfileRow,
    AllocationRow,
    QuotaRow,
    WebhookRow,
    EventRow,
    ProvisionRequestRow,
    ApprovalPolicyRow,
)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _rows(session: Session, model: Any) -> list[dict[str, Any]]:
    return [
        {k: _plain(v) for k, v in row._mapping.items()}
        for row in session.execute(select(model.__table__))
    ]


def snapshot(sessions: sessionmaker[Session], tenant_ids: dict[str, str]) -> dict[str, Any]:
    """Every row that belongs to someone, by owner ("alpha", "beta", "platform" for rows
    without a tenant, "other:<id>" for any other tenant), straight from the database; audit
    events as counts per owner."""
    label = {tenant_id: name for name, tenant_id in tenant_ids.items()}

    def owner(tenant_id: str | None) -> str:
        if tenant_id is None:
            return "platform"
        return label.get(tenant_id, f"other:{tenant_id}")

    found: dict[str, dict[str, Any]] = {}

    def add(who: str, table: str, row: dict[str, Any]) -> None:
        found.setdefault(who, {}).setdefault(table, []).append(row)

    with sessions() as session:
        for row in _rows(session, TenantRow):
            add(owner(row["id"]), "tenant", row)
        device_owner: dict[str, str] = {}
        allocation_owner: dict[str, str] = {}
        webhook_owner: dict[str, str] = {}
        for model in _OWNED:
            for row in _rows(session, model):
                who = owner(row["tenant_id"])
                add(who, model.__tablename__, row)
                if model is DeviceRow:
                    device_owner[row["id"]] = who
                if model is AllocationRow:
                    allocation_owner[row["id"]] = who
                if model is WebhookRow:
                    webhook_owner[row["id"]] = who
        for row in _rows(session, GpuRow):
            add(device_owner.get(row["device_id"], "orphan"), "gpu", row)
        for row in _rows(session, AllocationDeviceRow):
            add(allocation_owner.get(row["allocation_id"], "orphan"), "allocation_device", row)
        for row in _rows(session, WebhookDeliveryRow):
            add(webhook_owner.get(row["webhook_id"], "orphan"), "webhook_delivery", row)
        for row in _rows(session, SyncStateRow):
            add("platform", "sync_state", row)
        counts = Counter(
            {
                owner(tenant_id): n
                for tenant_id, n in session.execute(
                    select(AuditEventRow.tenant_id, func.count()).group_by(AuditEventRow.tenant_id)
                )
            }
        )
    for who, n in counts.items():
        found.setdefault(who, {})["audit_events"] = n
    for tables in found.values():
        for rows in tables.values():
            if isinstance(rows, list):
                rows.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
    return found


def protected(snap: dict[str, Any]) -> dict[str, Any]:
    """What tenant A must never change: everything that is not A's."""
    return {who: tables for who, tables in snap.items() if who != A_OWNER}


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Readable differences between two ``protected`` snapshots."""
    out = []
    for who in sorted(set(before) | set(after)):
        b, a = before.get(who, {}), after.get(who, {})
        for table in sorted(set(b) | set(a)):
            if b.get(table) == a.get(table):
                continue
            if not isinstance(b.get(table, []), list) or not isinstance(a.get(table, []), list):
                out.append(f"{who}.{table}: {b.get(table)} -> {a.get(table)}")
                continue
            old = {json.dumps(r, sort_keys=True, default=str) for r in b.get(table, [])}
            new = {json.dumps(r, sort_keys=True, default=str) for r in a.get(table, [])}
            for gone in sorted(old - new):
                out.append(f"{who}.{table} was: {gone[:400]}")
            for came in sorted(new - old):
                out.append(f"{who}.{table} now: {came[:400]}")
    return out


# --- comparing answers ------------------------------------------------------------------


def normalise(text: str, swaps: dict[str, str], known_ids: frozenset[str]) -> Any:
    """An answer with the aimed-at values replaced by placeholders, ids of items made during
    the test by <new-id>, and times by <time>: what must be equal between aiming at B and
    aiming at nothing."""
    for value in sorted(swaps, key=len, reverse=True):
        text = text.replace(value, swaps[value])
    text = UUID.sub(lambda m: m.group(0) if m.group(0) in known_ids else "<new-id>", text)
    text = TIMESTAMP.sub("<time>", text)
    return json.loads(text)


def leaked(text: str, markers: frozenset[str], sent: list[str]) -> list[str]:
    """B's markers in an answer, except those a request itself sent (or that contain what
    it sent: asking for B's host name 'beta-gpu-01' may echo 'beta-gpu-01:ib0' of A's own
    new port)."""
    return sorted(m for m in markers if m in text and not any(s in m for s in sent))


def unknown_value(value: str) -> str:
    """The stand-in for one of B's values: a random id, or the name with 'beta' → 'nope'."""
    if UUID.fullmatch(value):
        return str(uuid.uuid4())
    assert "beta" in value, value
    return value.replace("beta", "nope")


# Rows that a test may have added for A, removed children first.
_UNDO = (
    ("infiniband", InfinibandRow),
    ("gpu", GpuRow),
    ("device", DeviceRow),
    ("switch", SwitchRow),
    ("profile", ProfileRow),
    ("project", ProjectRow),
    ("provision_request", ProvisionRequestRow),
)


def undo_additions(sessions: sessionmaker[Session], world: World, now: dict[str, Any]) -> bool:
    """Take the world back to its baseline when a test only added rows of A's (a create, an
    import, a saved profile): cheaper than building it anew. False when anything else
    changed (then the caller rebuilds)."""
    if protected(now) != protected(world.baseline):
        return False
    before, after = world.baseline.get(A_OWNER, {}), now.get(A_OWNER, {})
    added: dict[str, list[Any]] = {}
    for table in set(before) | set(after):
        if table == "audit_events":
            continue
        old = {json.dumps(r, sort_keys=True, default=str) for r in before.get(table, [])}
        new = {json.dumps(r, sort_keys=True, default=str): r for r in after.get(table, [])}
        if not old <= set(new):
            return False  # one of A's rows changed or went
        added[table] = [r["id"] for key, r in new.items() if key not in old]
    if set(t for t, ids in added.items() if ids) - {t for t, _ in _UNDO}:
        return False  # an allocation, say: its devices changed too
    with unit_of_work(sessions) as session:
        for table, model in _UNDO:
            if added.get(table):
                session.execute(delete(model).where(model.id.in_(added[table])))
        session.execute(delete(AuditEventRow).where(AuditEventRow.id > world.audit_high_water))
    return snapshot(sessions, world.tenant_ids) == world.baseline


def shared_profile_funnel(caller: Any) -> list[str]:
    """The filters B's dry run with the platform profile "shared-prof" goes through: they
    change if anyone but a platform admin could rewrite that profile."""
    steps = caller.ok(
        """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) {
              explanation { steps { filter } } } }""",
        {
            "i": {
                "environment": "beta-probe",
                "profile": "shared-prof",
                "variables": {"gpu": "1"},
                "dryRun": True,
            }
        },
    )["matchDevice"]["explanation"]["steps"]
    return [step["filter"] for step in steps]
