"""fleetCapacity: this inventory and its providers added up, with per-source errors.

The providers are a second real gpu-inventory service (its own database), a closed port,
and three small HTTP servers standing in for faults a real service does not produce on
demand: one that answers HTML, one that answers a capacity view that does not add up, and
one that answers too late (fakes, for those faults only).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.db.session import make_engine, session_factory, upgrade_to_head
from api.settings import Provider, Settings
from tests.support.api import Api, make_tenant, make_token
from tests.support.fleet import fleet, labels, server
from tests.support.server import ServerThread, free_port

FLEET = """query($p: [String!], $t: Float! = 5) { fleetCapacity(providers: $p, timeoutSeconds: $t) {
  summary { providersQueried providersAnswered providersFailed nodes utilizationPercent }
  total { nodes resources { gpus { capacity allocated available } }
          gpuModels { vendor model gpus { capacity } } }
  sources { name url ok error latencyMs total { nodes } } } }"""
MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id } } }"""


class _Fault(BaseHTTPRequestHandler):
    body = b""
    delay = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(self.delay)
        try:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(self.body)
        except BrokenPipeError:
            pass  # the slow one: the inventory stopped waiting, as it should

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def faults() -> Iterator[dict[str, str]]:
    """Base URLs of the fake faulty providers."""
    not_a_view = {"data": {"capacity": {"total": {"nodes": -3, "resources": {}}}}}
    kinds = {
        "html": (b"<html>502 Bad Gateway</html>", 0.0),
        "nonsense": (json.dumps(not_a_view).encode(), 0.0),
        "slow": (b"{}", 3.0),
    }
    servers, urls = [], {}
    for name, (body, delay) in kinds.items():
        handler = type(f"Fault_{name}", (_Fault,), {"body": body, "delay": delay})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        urls[name] = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield urls
    for httpd in servers:
        httpd.shutdown()


def _service(
    tmp_path: Path, name: str, providers: tuple[Provider, ...] = ()
) -> tuple[ServerThread, sessionmaker[Session]]:
    """Another real service, on a database of its own."""
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    settings = Settings(database_url=url, providers=providers, lease_sweep_seconds=3600)
    return ServerThread(settings), session_factory(engine)


def test_the_fleet_adds_up_the_providers_that_answer_and_reports_the_rest(
    tmp_path: Path, faults: dict[str, str]
) -> None:
    india, india_sessions = _service(tmp_path, "india")
    with india:
        india_api = Api(india.url, make_token(india_sessions, "viewer"))
        fleet(india_api.as_(make_token(india_sessions, "platform-admin")), server("in-1"))
        providers = (
            Provider("india", india.url, india_api.token or ""),
            Provider("denied", india.url, "gpuinv_wrong"),
            Provider("down", f"http://127.0.0.1:{free_port()}", "t"),
            Provider("html", faults["html"], "t"),
            Provider("nonsense", faults["nonsense"], "t"),
            Provider("slow", faults["slow"], "t"),
        )
        main, sessions = _service(tmp_path, "main", providers)
        with main:
            api = Api(main.url, make_token(sessions, "platform-admin"))
            fleet(api, server("mum-1"), server("mum-2", vendor="AMD"))
            request = {"labels": labels(), "variables": {"gputype": "NVIDIA", "gpu": "8"}}
            api.ok(MATCH, input={"environment": "e-1", **request})

            started = time.perf_counter()
            view = api.ok(FLEET, t=1.0)["fleetCapacity"]
            assert time.perf_counter() - started < 3  # the slow one is not waited for

            assert view["summary"] == {
                "providersQueried": 7,
                "providersAnswered": 2,
                "providersFailed": 5,
                "nodes": 3,
                "utilizationPercent": round(100 * 8 / 24, 2),
            }
            assert view["total"]["resources"]["gpus"] == {
                "capacity": 24,
                "allocated": 8,
                "available": 16,
            }
            models = {
                (m["vendor"], m["model"]): m["gpus"]["capacity"] for m in view["total"]["gpuModels"]
            }
            assert models == {("NVIDIA", "H100"): 16, ("AMD", "H100"): 8}
            sources = {s["name"]: s for s in view["sources"]}
            assert sources["local"]["ok"] and sources["local"]["total"]["nodes"] == 2
            assert sources["india"]["ok"] and sources["india"]["total"]["nodes"] == 1
            assert sources["india"]["url"] == india.url and sources["india"]["latencyMs"] > 0
            errors = {name: s["error"] for name, s in sources.items() if not s["ok"]}
            assert "UNAUTHENTICATED" in errors["denied"]
            assert errors["down"].startswith("unreachable")
            assert errors["html"] == "answered something that is not JSON"
            assert "does not add up" in errors["nonsense"]
            assert errors["slow"] == "no answer within 1 s"
            assert all(sources[n]["total"] is None for n in errors)

            # some sources only; this inventory left out
            only = api.ok(FLEET, p=["india"])["fleetCapacity"]
            assert [s["name"] for s in only["sources"]] == ["india"]
            assert only["summary"]["nodes"] == 1

            # refusals, by name
            error = api.error(FLEET, p=["local", "atlantis"])
            assert error["extensions"]["code"] == "BAD_INPUT" and "'atlantis'" in error["message"]
            error = api.error(FLEET, t=0)
            assert (
                error["extensions"]["code"] == "BAD_INPUT" and "timeoutSeconds" in error["message"]
            )
            make_tenant(sessions, "acme")
            tenant = api.as_(make_token(sessions, "viewer", "acme"))
            assert tenant.error(FLEET)["extensions"]["code"] == "FORBIDDEN"


def test_with_no_providers_the_fleet_is_this_inventory(api: Api) -> None:
    fleet(api, server("gpu-1"))
    view = api.ok(FLEET)["fleetCapacity"]
    assert view["summary"]["providersQueried"] == 1 and view["summary"]["nodes"] == 1
    assert [s["name"] for s in view["sources"]] == ["local"]
