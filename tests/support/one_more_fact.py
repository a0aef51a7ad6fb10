"""Run as a program (``python -m tests.support.one_more_fact DATABASE_URL``): one more
machine fact and one more InfiniBand port fact, each declared in the table of
api/domain/fields.py alone, then taken through every layer of the real service; prints
what each layer made of them, as JSON.

A new fact needs two things: its entry in the table, and its column (a model attribute
and a migration). Here the entry is added to the table, and the column to the model and
to a freshly migrated database, before anything else of the service is imported; every
other layer (parsing, rendering, both write paths, CSV, GraphQL types and inputs, the
match index, device_details) must then carry it without a change. In a process of its
own, so the extra fact cannot leak into other tests.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

from api.domain import fields

RACK_ROW = fields.Fact("rackrow", "rack_row", "rackRow")
fields.PLACEMENT = (*fields.PLACEMENT, RACK_ROW)
fields.MACHINE_FACTS = fields.HARDWARE + fields.PLACEMENT + fields.VM_PLACEMENT
PORT_GUID = fields.Fact("portGuid", "port_guid", "portGuid")
fields.PORT_FACTS = (*fields.PORT_FACTS, PORT_GUID)

from sqlalchemy import Column, String, create_engine  # noqa: E402

from api.db.models import DeviceRow, InfinibandRow  # noqa: E402

DeviceRow.__table__.append_column(Column("rack_row", String(255)))
DeviceRow.__mapper__.add_property("rack_row", DeviceRow.__table__.c.rack_row)
InfinibandRow.__table__.append_column(Column("port_guid", String(255)))
InfinibandRow.__mapper__.add_property("port_guid", InfinibandRow.__table__.c.port_guid)

from starlette.testclient import TestClient  # noqa: E402

from api.app import create_app  # noqa: E402
from api.db.session import session_factory, unit_of_work, upgrade_to_head  # noqa: E402
from api.db.token import create_token  # noqa: E402
from api.domain.access import cli_principal  # noqa: E402
from api.settings import Settings  # noqa: E402

SERVER = {
    "hostname": "gpu-1",
    "totalcpu": 64,
    "totalmemoryMB": 524288,
    "totalgpus": 1,
    "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}],
    "rack": "r1",
    "rackrow": "row-7",
    "infiniband": [{"name": "ib0", "rateGbps": 400, "portGuid": "0xa0"}],
}
CSV = "hostname,totalcpu,rack,rackrow\ngpu-2,32,r2,row-8\n"
PORTS_CSV = "kind,device,port,portGuid\ninfiniband,gpu-2,ib1,0xb1\n"
PROFILE = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [{"type": "match", "keyInVariable": "host", "keyInDevice": "hostname"}]
    ),
}


def main(database_url: str) -> None:
    engine = create_engine(database_url)
    upgrade_to_head(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE device ADD COLUMN rack_row VARCHAR(255)")
        connection.exec_driver_sql("ALTER TABLE infiniband ADD COLUMN port_guid VARCHAR(255)")
    with unit_of_work(session_factory(engine)) as session:
        _, secret = create_token(session, cli_principal(), "platform-admin", None, "t", None)
    settings = replace(Settings(), database_url=database_url)
    seen: dict[str, object] = {}
    with TestClient(create_app(settings)) as client:

        def run(query: str, **variables: object) -> dict:
            answer = client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {secret}"},
            ).json()
            assert not answer.get("errors"), answer
            return answer["data"]

        imports = """mutation($f: ImportFormat!, $d: String!) {
          importInventory(format: $f, data: $d) { created } }"""
        run(imports, f="JSON", d=json.dumps({"devices": [SERVER]}))
        run(imports, f="CSV", d=CSV)
        run(imports, f="CSV", d=PORTS_CSV)
        port = run(
            "mutation($i: InfinibandInput!) { createInfiniband(input: $i) { id portGuid } }",
            i={"device": "gpu-2", "port": "ib2", "portGuid": "0xb2"},
        )["createInfiniband"]
        seen["createInfiniband"] = port["portGuid"]
        seen["updateInfiniband"] = run(
            'mutation($id: ID!) { updateInfiniband(id: $id, patch: {portGuid: "0xb3"}) '
            "{ portGuid } }",
            id=port["id"],
        )["updateInfiniband"]["portGuid"]
        created = run(
            "mutation($i: DeviceInput!) { createDevice(input: $i) { hostname rackRow } }",
            i={
                "hostname": "gpu-3",
                "rackRow": "row-9",
                "infiniband": [{"name": "ib0", "portGuid": "0xc0"}],
            },
        )
        seen["createDevice"] = created["createDevice"]
        listed = run("{ devices(first: 10) { edges { node { hostname rackRow document } } } }")
        seen["devices"] = [
            {
                "hostname": e["node"]["hostname"],
                "rackRow": e["node"]["rackRow"],
                "document": e["node"]["document"].get("rackrow"),
            }
            for e in listed["devices"]["edges"]
        ]
        device_id = run('{ devices(filter: {hostnamePrefix: "gpu-1"}) { edges { node { id } } } }')
        node_id = device_id["devices"]["edges"][0]["node"]["id"]
        updated = run(
            'mutation($id: ID!) { updateDevice(id: $id, patch: {rackRow: "row-1"}) { rackRow } }',
            id=node_id,
        )
        seen["updateDevice"] = updated["updateDevice"]
        matched = run(
            "mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { deviceDetails } }",
            i={"environment": "e1", "labels": PROFILE, "variables": {"host": "gpu-1"}},
        )
        details = matched["matchDevice"]["deviceDetails"]
        seen["deviceDetails"] = details.get("rackrow")
        seen["deviceDetailsPorts"] = [p.get("portGuid") for p in details["infiniband"]]
        listed_ports = run(
            "{ devices(first: 10) { edges { node { hostname infiniband { name portGuid } } } }"
            " infinibands(first: 10) { edges { node { name portGuid document } } } }"
        )
        seen["listedPorts"] = {
            e["node"]["hostname"]: e["node"]["infiniband"] for e in listed_ports["devices"]["edges"]
        }
        seen["infinibands"] = [
            [e["node"]["name"], e["node"]["portGuid"], e["node"]["document"].get("portGuid")]
            for e in listed_ports["infinibands"]["edges"]
        ]
        vm_input = run('{ __type(name: "VmInput") { inputFields { name } } }')["__type"]
        seen["vmInput"] = "rackRow" in [f["name"] for f in vm_input["inputFields"]]
    print(json.dumps(seen, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
