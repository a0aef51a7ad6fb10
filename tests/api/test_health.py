"""GPU and link health through the API: an unhealthy server (or one with a port down) is
not matched and not allocatable; an allocated one keeps its allocation and raises an alert
in the audit log and the metrics; clearing brings it back."""

from __future__ import annotations

import httpx
from sqlalchemy.orm import Session, sessionmaker

from tests.support.api import Api, make_token
from tests.support.fleet import fleet, labels, server
from tests.support.metrics import scrape, value

REPORT = """mutation($id: ID!, $code: HealthCode!, $m: String, $g: Int) {
  reportHealth(id: $id, code: $code, message: $m, gpuIndex: $g) {
    hostname healthy alert allocations health { code message gpuIndex port since reportedBy }
  } }"""
CLEAR = """mutation($id: ID!, $code: HealthCode) { clearHealth(id: $id, code: $code) {
  hostname healthy health { code port } } }"""
MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { devices { hostname } } explanation { steps { filter entered left } } } }"""
IDS = "{ devices { edges { node { id hostname healthy } } } }"
PORTS = "{ infinibands { edges { node { id name } } } }"
GPUS_ALLOCATABLE = "{ capacity { total { resources { gpus { allocatable available } } } } }"
EVENTS = """query($kind: String) { auditEvents(filter: {action: $kind}) {
  edges { node { objectName after } } } }"""


def _ids(api: Api) -> dict[str, str]:
    return {e["node"]["hostname"]: e["node"]["id"] for e in api.ok(IDS)["devices"]["edges"]}


def _dry_run(api: Api) -> dict:
    request = {"labels": labels(), "variables": {"gputype": "NVIDIA", "gpu": "8"}, "dryRun": True}
    return api.run(MATCH, input={"environment": "probe", **request})


def test_an_unhealthy_server_is_not_matched_until_cleared(api: Api) -> None:
    fleet(api, server("gpu-1"))
    gpu = _ids(api)["gpu-1"]
    report = api.ok(REPORT, id=gpu, code="XID", m="Xid 79: GPU has fallen off the bus", g=3)
    answer = report["reportHealth"]
    assert answer["healthy"] is False and answer["alert"] is False
    assert answer["health"] == [
        {
            "code": "XID",
            "message": "Xid 79: GPU has fallen off the bus",
            "gpuIndex": 3,
            "port": None,
            "since": answer["health"][0]["since"],
            "reportedBy": "token:platform-admin",
        }
    ]
    refused = _dry_run(api)["errors"][0]
    assert refused["extensions"]["code"] == "NO_MATCH"
    assert refused["extensions"]["explanation"]["steps"][0]["left"] == 0
    assert api.ok(GPUS_ALLOCATABLE)["capacity"]["total"]["resources"]["gpus"] == {
        "allocatable": 0,
        "available": 0,
    }
    # a repeated report refreshes, keeping when it started
    again = api.ok(REPORT, id=gpu, code="XID", m="Xid 79 again", g=3)["reportHealth"]["health"]
    assert len(again) == 1 and again[0]["since"] == answer["health"][0]["since"]

    cleared = api.ok(CLEAR, id=gpu)["clearHealth"]
    assert cleared == {"hostname": "gpu-1", "healthy": True, "health": []}
    assert _dry_run(api)["data"]["matchDevice"]["explanation"]["steps"][0]["left"] == 1


def test_a_port_down_takes_its_server_out_and_clearing_the_port_brings_it_back(api: Api) -> None:
    fleet(api, server("gpu-1", infiniband=[{"name": "ib0", "rateGbps": 400}]))
    port = api.ok(PORTS)["infinibands"]["edges"][0]["node"]["id"]
    api.ok(REPORT, id=port, code="LINK_DOWN", m="physical state: Disabled")
    server_health = api.ok(IDS)["devices"]["edges"][0]["node"]
    assert server_health["healthy"] is False
    assert _dry_run(api)["errors"][0]["extensions"]["code"] == "NO_MATCH"
    gpu = _ids(api)["gpu-1"]
    api.ok(REPORT, id=gpu, code="THERMAL")
    left = api.ok(CLEAR, id=port)["clearHealth"]  # the port's only
    assert left["healthy"] is False and left["health"] == [{"code": "THERMAL", "port": None}]
    api.ok(CLEAR, id=gpu, code="THERMAL")
    assert _dry_run(api)["data"]["matchDevice"]["allocation"] is None  # a dry run matched


def test_an_allocated_server_keeps_its_allocation_and_raises_an_alert(api: Api) -> None:
    fleet(api, server("gpu-1"))
    request = {"labels": labels(), "variables": {"gputype": "NVIDIA", "gpu": "8"}}
    api.ok(MATCH, input={"environment": "training-7", **request})
    before = scrape(api)
    gpu = _ids(api)["gpu-1"]
    answer = api.ok(REPORT, id=gpu, code="ECC", g=0)["reportHealth"]
    assert answer["alert"] is True and answer["allocations"] == ["training-7"]
    held = api.ok("{ allocations(filter: {active: true}) { edges { node { environment } } } }")
    assert [e["node"]["environment"] for e in held["allocations"]["edges"]] == ["training-7"]
    [alert] = [e["node"] for e in api.ok(EVENTS, kind="health-alert")["auditEvents"]["edges"]]
    assert alert["objectName"] == "gpu-1" and alert["after"]["allocations"] == ["training-7"]
    assert alert["after"]["condition"]["code"] == "ecc"
    after = scrape(api)
    grew = (value(after, "gpuinv_health_alerts_total", code="ecc") or 0) - (
        value(before, "gpuinv_health_alerts_total", code="ecc") or 0
    )
    assert grew == 1
    assert value(after, "gpuinv_devices_unhealthy", held="true") == 1
    # once released, it is simply unhealthy: out of matching, no alert
    api.ok('mutation { releaseAllocation(environment: "training-7") { id } }')
    assert value(scrape(api), "gpuinv_devices_unhealthy", held="false") == 1


def test_bad_health_reports_are_refused_by_name_and_change_nothing(
    api: Api, db: sessionmaker[Session]
) -> None:
    fleet(api, server("gpu-1", gpus=4))
    api.ok(
        "mutation($d: String!) { importInventory(data: $d) { created } }",
        d='{"switches": [{"name": "leaf-1"}], "infinibands": [{"device": "leaf-1", "port": "p1"}]}',
    )
    gpu = _ids(api)["gpu-1"]
    error = api.error(REPORT, id=gpu, code="XID", g=4)
    assert error["extensions"]["code"] == "BAD_INPUT" and "gpuIndex" in error["message"]
    assert "0..3" in error["message"] and "4" in error["message"]
    error = api.error(REPORT, id=gpu, code="XID", m="x" * 501)
    assert error["extensions"]["code"] == "BAD_INPUT" and "message" in error["message"]
    error = api.error(REPORT, id=gpu, code="MELTED")
    assert (
        error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED" and "MELTED" in error["message"]
    )
    error = api.error(REPORT, id="00000000-0000-0000-0000-000000000000", code="XID")
    assert error["extensions"]["code"] == "NOT_FOUND"
    switch_port = next(
        e["node"]["id"]
        for e in api.ok(PORTS)["infinibands"]["edges"]
        if e["node"]["name"] == "leaf-1:p1"
    )
    error = api.error(REPORT, id=switch_port, code="LINK_DOWN")
    assert error["extensions"]["code"] == "BAD_INPUT" and "leaf-1:p1" in error["message"]
    viewer = api.as_(make_token(db, "viewer"))
    assert viewer.error(REPORT, id=gpu, code="XID")["extensions"]["code"] == "FORBIDDEN"
    assert api.ok(IDS)["devices"]["edges"][0]["node"]["healthy"] is True  # nothing changed
    assert api.ok(EVENTS, kind="report-health")["auditEvents"]["edges"] == []
    assert httpx.get(f"{api.url}/healthz").status_code == 200
