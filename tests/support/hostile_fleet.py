"""The fleet hostile requests are sent against, and the judge of their answers (shared by
tests/api/test_hostile_generated.py and test_hostile_positions.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from tests.support import hostile
from tests.support.api import Api, make_tenant, make_token

ROLES = ["platform-admin", "partner-admin"]
RESTORE_EVERY = 25  # requests; hostile deletes and updates wear the fleet down

IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
SAVE = "mutation($n: String!, $l: JSON!) { saveProfile(name: $n, labels: $l) { name } }"
MATCH = "mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"
IDS = """{
  devices { edges { node { id } } }
  vms { edges { node { id } } }
  switches { edges { node { id } } }
  infinibands { edges { node { id } } }
  allocations { edges { node { id } } }
  tenants { id }
}"""


def server_document(name: str, tenant: str | None = None, **extra: Any) -> dict[str, Any]:
    gpus = [{"vendorCode": "NVIDIA", "modelNo": "H100-SXM5-80GB", "memoryMB": 81920}] * 8
    return {
        "hostname": name,
        "totalcpu": 224,
        "totalmemoryMB": 2_097_152,
        "totalstorageGB": 30_720,
        "gpus": gpus,
        "tags": {"location": "india"},
        "site": "blr-1",
        "infiniband": [{"name": "ib0", "rateGbps": 400, "fabric": "fabric-a", "switch": "leaf-1"}],
        **({"tenant": tenant} if tenant else {}),
        **extra,
    }


FLEET = {
    "devices": [
        server_document("srv-1"),
        server_document("srv-2", status="maintenance"),
        server_document("srv-a1", "tenant-a", project="proj-a"),
        server_document("srv-b1", "tenant-b"),
    ],
    "vms": [
        {"hostname": "vm-1", "totalcpu": 16, "cluster": "c1", "host": "srv-1"},
        {"hostname": "vm-a1", "totalcpu": 16, "tenant": "tenant-a"},
    ],
    "switches": [
        {"name": "leaf-1", "role": "ib-leaf", "fabric": "fabric-a", "site": "blr-1"},
        {"name": "leaf-a1", "role": "leaf", "tenant": "tenant-a"},
    ],
}
PROFILE = {
    hostile.INVENTORY: "baremetal",
    hostile.CONFIG: json.dumps(
        [
            {"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"},
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
            {
                "type": "capacity",
                "keyInVariable": "size",
                "keyInCapacity": "capacitySize",
                "capacityMap": {"small": {"requiredGPU": 1}, "big": {"requiredNoofNodes": 2}},
            },
        ]
    ),
}
KINDS = ("devices", "vms", "switches", "infinibands", "allocations")


@dataclass
class Fleet:
    """Servers, VMs, switches and ports of the platform and of two tenants, saved profiles
    and an allocation: what a hostile request could reach. Put back every RESTORE_EVERY
    requests, so that later requests still find something to break."""

    admin: Api
    partner: Api
    # One keep-alive connection for all requests: a new one each time costs ~50 ms here.
    client: httpx.Client
    ids: dict[str, list[str]] = field(default_factory=dict)  # by kind, as in KINDS + tenants
    sent: int = 0

    def caller(self, role: str) -> Api:
        return self.admin if role == "platform-admin" else self.partner

    @property
    def all_ids(self) -> list[str]:
        return [i for kind in self.ids.values() for i in kind]

    def send(self, role: str, query: str, variables: dict[str, Any]) -> httpx.Response:
        """One hostile request, judged (the fleet restored first when it is time)."""
        self.tick()
        return self.post(self.caller(role), query, variables)

    def tick(self) -> None:
        """Count a request; restore the fleet every RESTORE_EVERY of them."""
        self.sent += 1
        if self.sent % RESTORE_EVERY == 0:
            self.restore()

    def restore(self) -> None:
        """Import the fleet again (an upsert), save the profiles, allocate env-1 and
        read the ids. Judged like any request: hostile requests before may have left
        state that refuses part of this, but never with an internal error."""
        self.post(self.admin, IMPORT, {"d": json.dumps(FLEET)})
        self.post(self.admin, SAVE, {"n": "h100", "l": PROFILE})
        self.post(self.partner, SAVE, {"n": "h100-a", "l": PROFILE})
        request = {"environment": "env-1", "profile": "h100", "variables": {"gpu": "8"}}
        self.post(self.admin, MATCH, {"i": request})
        found = self.post(self.admin, IDS, {}).json()["data"]
        self.ids = {kind: [e["node"]["id"] for e in found[kind]["edges"]] for kind in KINDS}
        self.ids["tenants"] = [t["id"] for t in found["tenants"]]
        assert len(self.all_ids) >= hostile.ID_SLOTS // 2, found

    def post(self, caller: Api, query: str, variables: dict[str, Any]) -> httpx.Response:
        body = with_ids(json.dumps({"query": query, "variables": variables}), self.all_ids)
        return judged(self.client, caller, body)


def make_fleet(api: Api, db: sessionmaker[Session]) -> Fleet:
    make_tenant(db, "tenant-a", "proj-a")
    make_tenant(db, "tenant-b")
    partner = api.as_(make_token(db, "partner-admin", "tenant-a"))
    fleet = Fleet(api, partner, httpx.Client(timeout=60))
    fleet.restore()
    return fleet


def with_ids(text: str, ids: list[str]) -> str:
    """Put the fleet's ids where the strategies drew placeholders ``__ID_<n>__``."""
    if not ids:  # while the fleet is first made
        return text
    for n in range(hostile.ID_SLOTS):
        text = text.replace(f"__ID_{n}__", ids[n % len(ids)])
    return text


def judged(client: httpx.Client, caller: Api, body: str) -> httpx.Response:
    """Send a JSON body as Python writes it (lone surrogates as \\ud800 escapes, NaN as
    NaN: all of which a hostile client may send) and judge the answer: never a 5xx, every
    error with a code, none internal."""
    response = client.post(
        f"{caller.url}/graphql",
        content=body.encode(),
        headers={"Authorization": f"Bearer {caller.token}", "Content-Type": "application/json"},
    )
    shown = f"{body[:1500]}\n-> HTTP {response.status_code}: {response.text[:1500]}"
    assert response.status_code < 500, shown
    errors = response.json().get("errors") or []
    if response.status_code != 200:
        assert errors, shown
    for error in errors:
        code = (error.get("extensions") or {}).get("code")
        assert code, shown
        assert code != "INTERNAL_SERVER_ERROR", shown
    return response
