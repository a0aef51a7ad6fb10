"""The CLI as a newcomer meets it in the first hour: real `gpuinv` and `./dev` processes,
their stdout a pipe, in a directory of their own, on real SQLite files and PostgreSQL.

- a command that reads or acts on data refuses a database that does not exist, naming it;
- a database that cannot be used is one line naming it (no password), never a traceback;
- tables written to a pipe are whole: full width, no box, no colour;
- `serve` says at start what it talks to; a second `serve --demo` duplicates nothing;
- `./dev` keeps the caller's directory; `./dev test` says when the browser tests will skip.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.database import fresh_postgres_database, postgres_or_fail
from tests.support.processes import GPUINV, run_cli
from tests.support.server import free_port

REPO = Path(__file__).resolve().parents[2]
DEV = str(REPO / "dev")
HINT = "run `gpuinv db upgrade` to create it, `gpuinv serve --demo` for one with a sample fleet"
BOX = set("│┃━─┏┓┗┛┡┩└┘╇╈")


def run(
    args: list[str], cwd: Path, env: dict[str, str], check: bool = True, command: str = GPUINV
) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env, cwd, check, command)


@pytest.fixture
def bare_env() -> dict[str, str]:
    """A shell with no GPUINV_DATABASE_URL: the default database, gpuinv.db in the cwd."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUINV_")}
    return env | {"COLUMNS": "80"}


@pytest.fixture
def postgres_without_schema() -> Iterator[str]:
    url, drop = fresh_postgres_database("gpuinv_newcomer")
    yield url
    drop()


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# -- 6: a database that does not exist ---------------------------------------------------

READERS = [
    ["devices"],
    ["devices", "--vms", "--json"],
    ["token", "list"],
    ["token", "revoke", "abcdef12"],
    ["tenant", "list"],
    ["profile", "list"],
    ["match", "--profile", "h100", "--var", "gpu=8"],
    ["release", "env-1"],
    ["backup", "x.bak"],
]


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_readers_refuse_a_sqlite_file_that_is_not_there_and_create_nothing(
    args: list[str], tmp_path: Path, bare_env: dict[str, str]
) -> None:
    line = one_error_line(run(args, tmp_path, bare_env, check=False))
    assert line == (
        f"Error: no database at sqlite:///gpuinv.db ({tmp_path / 'gpuinv.db'}): {HINT}, "
        "or set GPUINV_DATABASE_URL to yours"
    )
    assert list(tmp_path.iterdir()) == []  # no empty gpuinv.db, no x.bak


def test_readers_refuse_a_postgres_database_without_the_schema(
    postgres_without_schema: str, tmp_path: Path, bare_env: dict[str, str]
) -> None:
    env = bare_env | {"GPUINV_DATABASE_URL": postgres_without_schema}
    for args in (["devices"], ["tenant", "list"], ["release", "env-1"], ["backup", "x.bak"]):
        line = one_error_line(run(args, tmp_path, env, check=False))
        assert line.startswith(
            f"Error: no gpuinv database at {postgres_without_schema} "
            f"(it has no alembic_version table): {HINT}"
        ), line
    with psycopg.connect(postgres_without_schema) as connection:
        tables = connection.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)  # not migrated behind the user's back


def test_writers_create_the_database_and_say_where(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    database = tmp_path / "gpuinv.db"
    created = run(["tenant", "create", "acme"], tmp_path, bare_env)
    assert created.stdout == "acme\n"
    assert created.stderr == f"created a new database at sqlite:///gpuinv.db ({database})\n"
    assert run(["tenant", "create", "initech"], tmp_path, bare_env).stderr == ""
    upgraded = run(["db", "upgrade"], tmp_path, bare_env).stderr
    assert upgraded == f"the database sqlite:///gpuinv.db ({database}) is at the newest schema\n"
    assert "acme" in run(["tenant", "list"], tmp_path, bare_env).stdout


def test_an_empty_file_is_refused_like_a_missing_one(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    (tmp_path / "gpuinv.db").touch()
    line = one_error_line(run(["devices"], tmp_path, bare_env, check=False))
    assert line.startswith("Error: no gpuinv database at sqlite:///gpuinv.db (")
    assert "(it has no alembic_version table)" in line


def test_dev_runs_the_cli_in_the_callers_directory(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    (tmp_path / "fleet.json").write_text(json.dumps({"devices": [{"hostname": "gpu-1"}]}))
    imported = run(["import", "fleet.json"], tmp_path, bare_env, command=DEV)
    assert imported.stdout.strip() == "created 1, updated 0, unchanged 0"
    assert (tmp_path / "gpuinv.db").exists()  # the default database is the caller's too
    run(["backup", "x.bak"], tmp_path, bare_env, command=DEV)
    assert (tmp_path / "x.bak").stat().st_size > 0 and not (REPO / "x.bak").exists()
    assert "gpu-1" in run(["devices"], tmp_path, bare_env, command=DEV).stdout


# -- 8: a database that cannot be used ----------------------------------------------------


def _not_a_database(tmp_path: Path) -> str:
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    return "sqlite:///notes.txt"


BAD_URLS = {
    "unknown host": (
        lambda _: "postgresql://inv:s3cret@no-such-host.invalid/inventory",
        "cannot reach the database postgresql://inv:***@no-such-host.invalid/inventory: "
        "unknown host 'no-such-host.invalid'",
    ),
    "refused port": (
        lambda _: "postgresql://inv:s3cret@127.0.0.1:1/inventory",
        "cannot reach the database postgresql://inv:***@127.0.0.1:1/inventory: connection refused",
    ),
    "bad credentials": (
        lambda _: "postgresql://nobody-here:s3cret@127.0.0.1:5432/test",
        "cannot reach the database postgresql://nobody-here:***@127.0.0.1:5432/test: "
        'role "nobody-here" does not exist',
    ),
    "port not a number": (
        lambda _: "postgresql://inv:s3cret@db:port/inventory",
        "cannot use the database postgresql://inv:***@db:port/inventory: the port is not a "
        "number (use sqlite:///path.db or postgresql://user:password@host[:port]/db)",
    ),
    "not a URL": (
        lambda _: "inventory.db",
        "cannot use the database inventory.db: not a database URL (use sqlite:///path.db or "
        "postgresql://user:password@host[:port]/db)",
    ),
    "unquoted @ in the password": (
        lambda _: "postgresql://inv:s3cret@x@db/inventory",
        "cannot use the database postgresql://inv:***@db/inventory: the password holds '@': "
        "write it as %40 (percent-encode it)",
    ),
    "sqlite in a missing directory": (
        lambda tmp: f"sqlite:///{tmp}/no/such/dir/gpuinv.db",
        "cannot reach the database sqlite:///{tmp}/no/such/dir/gpuinv.db: the directory "
        "{tmp}/no/such/dir does not exist",
    ),
    "sqlite on a text file": (
        _not_a_database,
        "cannot reach the database sqlite:///notes.txt ({tmp}/notes.txt): notes.txt is not a "
        "SQLite database",
    ),
}


@pytest.mark.parametrize("case", list(BAD_URLS))
@pytest.mark.parametrize(
    "args", [["devices"], ["db", "upgrade"], ["import", "fleet.json"], ["serve"]], ids=str
)
def test_a_database_that_cannot_be_used_is_one_line_naming_it(
    case: str, args: list[str], tmp_path: Path, bare_env: dict[str, str]
) -> None:
    if case == "bad credentials":
        postgres_or_fail()
    url_for, expected = BAD_URLS[case]
    (tmp_path / "fleet.json").write_text('{"devices": []}')
    env = bare_env | {"GPUINV_DATABASE_URL": url_for(tmp_path)}
    if args == ["serve"]:
        args = ["serve", "--port", str(free_port())]
    done = run(args, tmp_path, env, check=False)
    assert one_error_line(done) == "Error: " + expected.format(tmp=tmp_path)
    assert "s3cret" not in done.stderr + done.stdout
    if case == "sqlite on a text file":
        assert (tmp_path / "notes.txt").read_text() == "not a database\n" * 100


# -- 10: tables on a pipe ----------------------------------------------------------------

LONG_HOST = "blr-1-gpu-h100-sxm5-rack-r12-unit-07-node-a.example.internal"  # 59 characters
LONG_TENANT = "partner-alpha-cloud-services-india"
LONG_TOKEN = "terraform-pipeline-for-partner-alpha-cloud-services-india"


@pytest.fixture
def filled(tmp_path: Path, bare_env: dict[str, str]) -> dict[str, str]:
    env = bare_env | {"GPUINV_DATABASE_URL": f"sqlite:///{tmp_path / 'wide.db'}"}
    run(["tenant", "create", LONG_TENANT, "--name", "Partner Alpha Cloud Services"], tmp_path, env)
    gpus = [{"vendorCode": "NVIDIA", "modelNo": "H100-SXM5-80GB-HBM3-PCIe-variant"}] * 8
    fleet = {
        "devices": [
            {
                "hostname": LONG_HOST,
                "tenant": LONG_TENANT,
                "site": "blr-1",
                "gpus": gpus,
                "model": "DGX H100 with a long marketing name",
                "totalcpu": 224,
            }
        ]
    }
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    run(["import", "fleet.json"], tmp_path, env)
    run(
        ["token", "create", "--role", "viewer", "--tenant", LONG_TENANT, "--name", LONG_TOKEN],
        tmp_path,
        env,
    )
    labels = {
        "paas.envmgmt.io/inventory": "baremetal",
        "paas.envmgmt.io/inventory.config": json.dumps(
            [{"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.modelNo"}]
        ),
    }
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    run(
        ["profile", "save", "h100-india-with-a-rather-long-profile-name", "labels.json"],
        tmp_path,
        env,
    )
    return env


def plain(output: str) -> list[list[str]]:
    assert "\x1b[" not in output and not BOX & set(output), output
    assert not re.search(r"\S…", output), output  # a cut cell ("partner-a…"); a token's
    # secret column is "…" and its last 4 characters
    return [re.split(r"\s{3,}", line.strip()) for line in output.strip().splitlines()]


def test_tables_on_a_pipe_are_whole_and_plain(filled: dict[str, str], tmp_path: Path) -> None:
    devices = plain(run(["devices"], tmp_path, filled).stdout)
    assert devices[0] == ["HOSTNAME", "STATUS", "SITE", "MODEL", "GPUS", "FREE", "TENANT"]
    assert devices[1] == [
        LONG_HOST,
        "available",
        "blr-1",
        "DGX H100 with a long marketing name",
        "8 x H100-SXM5-80GB-HBM3-PCIe-variant",
        "8",
        LONG_TENANT,
    ]
    tokens = plain(run(["token", "list"], tmp_path, filled).stdout)
    assert tokens[0][:4] == ["ID", "NAME", "ROLE", "TENANT"]
    assert tokens[1][1:4] == [LONG_TOKEN, "viewer", LONG_TENANT]
    tenants = plain(run(["tenant", "list"], tmp_path, filled).stdout)
    assert tenants == [["SLUG", "NAME"], [LONG_TENANT, "Partner Alpha Cloud Services"]]
    profiles = plain(run(["profile", "list"], tmp_path, filled).stdout)
    assert profiles == [
        ["NAME", "INVENTORY_TYPE", "TENANT"],
        ["h100-india-with-a-rather-long-profile-name", "baremetal", "-"],
    ]
    funnel = run(
        [
            "match",
            "--profile",
            "h100-india-with-a-rather-long-profile-name",
            "--dry-run",
            "--var",
            "gputype=H100-SXM5-80GB-HBM3-PCIe-variant",
        ],
        tmp_path,
        filled,
    ).stdout
    steps = plain(funnel)
    assert steps[0] == ["FILTER", "ENTERED", "LEFT", "NOTE"]
    assert steps[2][:3] == ["gpus.modelNo=H100-SXM5-80GB-HBM3-PCIe-variant", "1", "1"]
    assert funnel.splitlines()[-1] == f"Would allocate {LONG_HOST} (dry run: nothing allocated)"


def test_a_terminal_still_gets_the_rich_table(filled: dict[str, str], tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [GPUINV, "tenant", "list"], cwd=tmp_path, env=filled, stdout=follower, stderr=follower
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(60) == 0
    os.close(leader)
    text = output.decode()
    assert BOX & set(text) and "slug" in text, text


# -- 7 and 12a: serve --------------------------------------------------------------------


def serve_until(
    args: list[str], env: dict[str, str], cwd: Path, ready: str
) -> tuple[subprocess.Popen[str], Path]:
    """Start ``gpuinv serve ARGS``; return once ``ready`` shows in its stderr."""
    log = cwd / f"serve-{time.monotonic_ns()}.log"
    process = subprocess.Popen(
        [GPUINV, "serve", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while ready not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return process, log


def stop(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)


def test_serve_says_what_it_is_configured_with(
    postgres_without_schema: str, tmp_path: Path, bare_env: dict[str, str]
) -> None:
    user, rest = postgres_without_schema.split("://", 1)[1].split("@", 1)
    with_password = f"postgresql://{user}:hunter2@{rest}"  # trust: any password is let in
    port, ops = free_port(), free_port()
    env = bare_env | {
        "GPUINV_DATABASE_URL": with_password,
        "GPUINV_NETBOX_WEBHOOK_SECRET": "shared-secret",
        "GPUINV_CORS_ORIGINS": "https://portal.example.com,https://ops.example.com",
        "GPUINV_PROVIDERS": json.dumps(
            [{"name": "fra-1", "url": "https://fra-1.example.com/graphql", "token": "t0ken"}]
        ),
        "GPUINV_OPS_ADDRESS": f"127.0.0.1:{ops}",
    }
    process, log = serve_until(["--port", str(port)], env, tmp_path, "NetBox webhook")
    stop(process)
    said = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["logger"] == "gpuinv.serve":
            said[record["message"].split(":")[0]] = (record["level"], record["message"])
    shown = with_password.replace("hunter2", "***")
    assert said == {
        "database": ("INFO", f"database: {shown} (created now)"),
        "GraphiQL": (
            "INFO",
            f"GraphiQL: http://127.0.0.1:{port}/graphql (open it in a browser; the API is "
            "the same URL)",
        ),
        "ops": (
            "INFO",
            f"ops: /healthz, /readyz and /metrics at http://127.0.0.1:{ops} (GPUINV_OPS_ADDRESS)",
        ),
        "CORS": (
            "INFO",
            "CORS: browsers may call the API from https://portal.example.com, "
            "https://ops.example.com",
        ),
        "fleetCapacity": (
            "INFO",
            "fleetCapacity: this inventory and fra-1 at "
            "https://fra-1.example.com (GPUINV_PROVIDERS)",
        ),
        "NetBox webhook": (
            "WARNING",
            "NetBox webhook: GPUINV_NETBOX_WEBHOOK_SECRET is set but NETBOX_URL and "
            "NETBOX_TOKEN are not: /hooks/netbox will answer 503, since it re-reads each "
            "changed item from NetBox",
        ),
    }
    text = log.read_text()
    assert "hunter2" not in text and "t0ken" not in text and "shared-secret" not in text


def test_serve_with_nothing_configured_says_so(tmp_path: Path, bare_env: dict[str, str]) -> None:
    port = free_port()
    env = {k: v for k, v in bare_env.items() if not k.startswith("NETBOX_")}
    process, log = serve_until(["--port", str(port)], env, tmp_path, "NetBox webhook")
    stop(process)
    messages = [
        json.loads(line)["message"]
        for line in log.read_text().splitlines()
        if json.loads(line)["logger"] == "gpuinv.serve"
    ]
    assert messages == [
        f"database: sqlite:///gpuinv.db ({tmp_path / 'gpuinv.db'}) (created now)",
        f"GraphiQL: http://127.0.0.1:{port}/graphql (open it in a browser; the API is the "
        "same URL)",
        f"ops: /healthz, /readyz and /metrics at http://127.0.0.1:{port} "
        "(GPUINV_OPS_ADDRESS unset)",
        "CORS: off, no other origin's pages may call the API (GPUINV_CORS_ORIGINS unset)",
        "fleetCapacity: this inventory only (GPUINV_PROVIDERS unset)",
        "NetBox webhook: off, /hooks/netbox answers 503 (set GPUINV_NETBOX_WEBHOOK_SECRET, "
        "NETBOX_URL and NETBOX_TOKEN)",
    ]


COUNTS = "{ devices { totalCount } vms { totalCount } switches { totalCount } tenants { slug } }"


def _demo(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    port = free_port()
    process, _ = serve_until(
        ["--demo", "--port", str(port)], env, tmp_path, "Application startup complete"
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip(), f"http://127.0.0.1:{port}/graphql"


def _graphql(url: str, token: str, query: str) -> dict:
    return httpx.post(
        url, json={"query": query}, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()


def test_a_second_serve_demo_renews_the_token_and_duplicates_nothing(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    def census() -> dict[str, object]:
        with sqlite3.connect(tmp_path / "gpuinv.db") as connection:
            return {
                table: connection.execute(f"select count(*) from {table}").fetchone()[0]
                for table in (
                    "tenant",
                    "project",
                    "profile",
                    "api_token",
                    "device",
                    "gpu",
                    "switch",
                )
            }

    first, token, url = _demo(tmp_path, bare_env)
    try:
        counts = _graphql(url, token, COUNTS)["data"]
    finally:
        stop(first)
    before = census()
    second, renewed, url = _demo(tmp_path, bare_env)
    try:
        assert renewed.startswith("gpuinv_") and renewed != token
        assert _graphql(url, renewed, COUNTS)["data"] == counts
        refused = _graphql(url, token, COUNTS)["errors"][0]
        assert refused["extensions"]["code"] == "UNAUTHENTICATED"
    finally:
        stop(second)
    assert census() == before
    tokens = json.loads(run(["token", "list", "--json"], tmp_path, bare_env).stdout)
    assert [(t["name"], t["role"], t["revokedAt"]) for t in tokens] == [
        ("demo", "platform-admin", None)
    ]
    assert tokens[0]["hint"] == "…" + renewed[-4:]


# -- 12b: ./dev test without Chromium ------------------------------------------------------

COLLECT_ONE = [
    "test",
    "--co",
    "-q",
    "-n",
    "0",
    "-p",
    "no:cacheprovider",
    "tests/integration/test_cli.py::test_version_and_help_describe_the_tool",
]


def test_dev_test_says_up_front_when_the_browser_tests_will_skip(
    tmp_path: Path, bare_env: dict[str, str]
) -> None:
    missing = bare_env | {"GPUINV_CHROMIUM": str(tmp_path / "no-chromium"), "CI": ""}
    said = run(COLLECT_ONE, tmp_path, missing, check=False, command=DEV).stderr
    assert said.splitlines()[0] == (
        f"[dev] no Chromium at {tmp_path / 'no-chromium'}: the dashboard and GraphiQL browser "
        "tests will be skipped (install it: sudo apt-get install chromium; or set "
        "GPUINV_CHROMIUM)"
    )
    in_ci = run(COLLECT_ONE, tmp_path, missing | {"CI": "true"}, check=False, command=DEV)
    assert "Chromium" not in in_ci.stderr  # under CI the tests fail loudly instead
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    found = run(
        COLLECT_ONE, tmp_path, bare_env | {"GPUINV_CHROMIUM": str(fake)}, check=False, command=DEV
    )
    assert "Chromium" not in found.stderr
