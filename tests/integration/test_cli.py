"""The gpuinv command as users run it: a real process, a real database, a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from api.db import quota as quota_db
from api.db.session import make_engine, session_factory
from api.domain.access import cli_principal
from tests.support.processes import GPUINV
from tests.support.processes import run_cli as run
from tests.support.server import free_port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"GPUINV_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}


def test_version_and_help_describe_the_tool(env: dict[str, str]) -> None:
    assert run(["--version"], env).stdout.startswith("gpuinv, version ")
    help_text = run(["--help"], env).stdout
    for command in ("serve", "db", "import", "devices", "token", "tenant"):
        assert command in help_text


def test_token_create_prints_the_token_alone_and_list_revoke_work(env: dict[str, str]) -> None:
    run(["tenant", "create", "acme-ai", "--name", "Acme AI"], env)
    created = run(
        [
            "token",
            "create",
            "--role",
            "partner-admin",
            "--tenant",
            "acme-ai",
            "--ttl",
            "30d",
            "--name",
            "ci",
        ],
        env,
    )
    secret = created.stdout
    assert secret.startswith("gpuinv_") and secret.endswith("\n")
    assert len(secret.strip().splitlines()) == 1
    listed = json.loads(run(["token", "list", "--json"], env).stdout)
    assert [(t["name"], t["role"], t["tenant"]) for t in listed] == [
        ("ci", "partner-admin", "acme-ai")
    ]
    assert listed[0]["expiresAt"] is not None and secret.strip() not in json.dumps(listed)
    run(["token", "revoke", listed[0]["id"][:8]], env)
    assert json.loads(run(["token", "list", "--json"], env).stdout)[0]["revokedAt"]


def test_tenant_create_sets_its_initial_quota_in_one_step(env: dict[str, str]) -> None:
    run(["tenant", "create", "helix-ai", "--gpus", "64", "--nodes", "8"], env)
    engine = make_engine(env["GPUINV_DATABASE_URL"])
    with session_factory(engine)() as session:
        [quota] = quota_db.list_quotas(session, cli_principal(), "helix-ai", None)
    engine.dispose()
    assert (quota.tenant, quota.project, quota.gpus, quota.nodes) == ("helix-ai", None, 64, 8)
    refused = run(["tenant", "create", "other-ai", "--gpus", "-1"], env, check=False)
    assert refused.returncode != 0 and "--gpus" in refused.stderr
    assert json.loads(run(["tenant", "list", "--json"], env).stdout)[0]["slug"] == "helix-ai"
    assert len(json.loads(run(["tenant", "list", "--json"], env).stdout)) == 1


def test_token_create_refuses_bad_grants(env: dict[str, str]) -> None:
    missing_tenant = run(["token", "create", "--role", "partner-admin"], env, check=False)
    assert missing_tenant.returncode != 0 and "--tenant" in missing_tenant.stderr
    unknown = run(["token", "create", "--role", "viewer", "--tenant", "nope"], env, check=False)
    assert unknown.returncode != 0 and "'nope' not found" in unknown.stderr
    bad_ttl = run(["token", "create", "--role", "viewer", "--ttl", "soon"], env, check=False)
    assert bad_ttl.returncode == 2 and "12h" in bad_ttl.stderr
    assert run(["token", "list", "--json"], env).stdout.strip() == "[]"


def test_import_json_then_csv_and_list_devices(env: dict[str, str], tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.json"
    fleet.write_text(
        json.dumps(
            {
                "devices": [
                    {
                        "hostname": "gpu-1",
                        "totalcpu": 64,
                        "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8,
                        "site": "blr-1",
                    }
                ]
            }
        )
    )
    assert run(["import", str(fleet)], env).stdout.strip() == "created 1, updated 0, unchanged 0"
    csv_file = tmp_path / "more.csv"
    csv_file.write_text(
        "hostname,totalcpu,gpuCount,gpuVendor,gpuModel,site\n"
        "gpu-2,32,4,AMD,MI300X,fra-1\ngpu-1,64,8,NVIDIA,H100,blr-1\n"
    )
    assert run(["import", str(csv_file)], env).stdout.strip() == "created 1, updated 0, unchanged 1"
    documents = json.loads(run(["devices", "--json"], env).stdout)
    assert [d["hostname"] for d in documents] == ["gpu-1", "gpu-2"]
    assert documents[1]["gpus"][0]["vendorCode"] == "AMD"
    table = run(["devices", "--site", "fra-1"], env).stdout
    assert "gpu-2" in table and "gpu-1" not in table


def test_import_of_a_bad_file_names_row_and_field_and_writes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("hostname,totalcpu\ngpu-1,64\ngpu-2,lots\n")
    result = run(["import", str(bad)], env, check=False)
    assert result.returncode == 1
    assert "row 3" in result.stderr and "totalcpu" in result.stderr and "'lots'" in result.stderr
    assert json.loads(run(["devices", "--json"], env).stdout) == []


def test_serve_demo_prints_a_token_that_queries_the_sample_fleet(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [GPUINV, "serve", "--demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        token = process.stdout.readline().strip()
        assert token.startswith("gpuinv_")
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        query = (
            "{ devices(first: 500) { totalCount edges { node { gpus { vendorCode } } } } "
            "switches { totalCount } vms { totalCount } tenants { slug } }"
        )
        data = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": query},
            headers={"Authorization": f"Bearer {token}"},
        ).json()["data"]
        assert data["devices"]["totalCount"] >= 200
        vendors = {g["vendorCode"] for e in data["devices"]["edges"] for g in e["node"]["gpus"]}
        assert vendors == {"NVIDIA", "AMD", "INTEL"}
        assert data["switches"]["totalCount"] > 0 and data["vms"]["totalCount"] > 0
        assert len(data["tenants"]) >= 3
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["ready"] is True
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
