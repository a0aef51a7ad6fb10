"""Who stops the test NetBox: a pytest session stops the NetBox it started when its last
process is done (xdist workers included), and leaves one that was started by hand.

Each case runs a small pytest session in a subprocess against a NetBox of its own (another
port, so another run directory, configuration and working database; the venv and template
are shared with the suite's NetBox, which is not touched).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netbox.fixture import NetBox

ROOT = Path(__file__).resolve().parents[2]
# Its own NetBoxes, which no fixture shows: each case starts one (~15 s) in a pytest of its own.
pytestmark = pytest.mark.netbox

# Runs inside the inner session. With -n 2, xdist hands one test to each worker and ends a
# worker's session as soon as its test is done. The tests hold NetBox in turn (the plugin's
# in-use lock): the one that goes first waits until the other worker is registered as a user
# (it is, before it waits for the lock); the other then finds that the first worker's end
# left NetBox running for it.
INNER_TESTS = """
import json, os, time
from pathlib import Path

from tests.netbox import fixture

OUT = Path(os.environ["LIFECYCLE_OUT"])
TWO_WORKERS = os.environ.get("PYTEST_XDIST_WORKER_COUNT") == "2"


def _wait(check, timeout=60):
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.2)
    return check()


def _use(name, other, netbox):
    assert netbox.api().status()["netbox-version"].startswith(fixture.VERSION)
    pids = {n: fixture._read(fixture.RUN / f"{n}.pid").split()[0] for n in fixture.PROCESSES}
    (OUT / f"{name}.json").write_text(json.dumps({"pid": os.getpid(), "netbox": pids}))
    if not TWO_WORKERS:
        return
    if not (OUT / f"{other}.json").exists():  # first: the other worker waits for the lock
        assert _wait(lambda: len(fixture._users()) == 2), "the other worker never registered"
        return
    earlier = json.loads((OUT / f"{other}.json").read_text())
    # the first worker's session is over (the process itself lives on until the run's end)
    assert _wait(lambda: fixture._users() == [os.getpid()]), "the first worker never let go"
    assert fixture.netbox_running(), "stopped while another worker still used it"
    assert earlier["netbox"] == pids, "restarted in between"
    assert netbox.api().status()["rq-workers-running"] >= 1
    (OUT / "outlived-the-first-worker").touch()


def test_first(netbox):
    _use("first", "second", netbox)


def test_second(netbox):
    _use("second", "first", netbox)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _alive(pid: str) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def other_netbox(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """A port and the environment for a NetBox of its own; purged afterwards."""
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GPUINV_NETBOX_KEEP", "GPUINV_NETBOX_STOP", "PYTEST_ADDOPTS")
        and not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))
    }
    env |= {
        "GPUINV_NETBOX_PORT": str(port),
        "GPUINV_NETBOX_REDIS_DBS": "10,11",  # not the suite's 12 and 13
        "PYTHONPATH": str(ROOT),
        "LIFECYCLE_OUT": str(tmp_path / "out"),
    }
    (tmp_path / "out").mkdir()
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text('pytest_plugins = ["tests.netbox.plugin"]\n')
    (inner / "test_inner.py").write_text(INNER_TESTS)
    try:
        yield port, env
    finally:
        fixture = [sys.executable, "-m", "tests.netbox.fixture", "down", "--purge"]
        subprocess.run(fixture, env=env, cwd=ROOT, capture_output=True, timeout=120)


def _pytest(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    result = subprocess.run(
        [*argv, str(tmp_path / "inner")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def _recorded(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / "out" / f"{name}.json").read_text())


def test_a_session_under_xdist_stops_the_netbox_it_started_when_its_last_worker_ends(
    other_netbox: tuple[int, dict[str, str]], tmp_path: Path
) -> None:
    port, env = other_netbox
    assert not _listening(port)

    _pytest(tmp_path, env, "-n", "2", "--dist", "load")

    first, second = _recorded(tmp_path, "first"), _recorded(tmp_path, "second")
    assert first["pid"] != second["pid"], "the two tests ran in one worker"
    assert (tmp_path / "out" / "outlived-the-first-worker").exists()
    assert first["netbox"] == second["netbox"]  # one NetBox, started once
    assert not _listening(port), f"something still listens on {port}"
    for name, pid in first["netbox"].items():
        assert not _alive(pid), f"{name} (pid {pid}) outlived the session"


def test_a_netbox_started_by_hand_with_the_sample_is_left_up(
    other_netbox: tuple[int, dict[str, str]], tmp_path: Path
) -> None:
    port, env = other_netbox
    up = subprocess.run(
        [sys.executable, "-m", "tests.netbox.fixture", "up", "--sample"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr[-4000:]
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1)
        for line in up.stdout.splitlines()
    )
    assert exports["NETBOX_URL"] == f"http://127.0.0.1:{port}"
    assert "sample loaded" in up.stderr

    _pytest(tmp_path, env, "-n", "0", "-k", "first")

    assert _listening(port)
    for pid in _recorded(tmp_path, "first")["netbox"].values():
        assert _alive(pid)
    nb = NetBox(exports["NETBOX_URL"], exports["NETBOX_TOKEN"]).api()
    assert sorted(d.name for d in nb.dcim.devices.all()) == [
        "gpu-001", "gpu-002", "gpu-003", "ib-leaf-1",
    ]  # fmt: skip

    down = [sys.executable, "-m", "tests.netbox.fixture", "down"]
    subprocess.run(down, env=env, cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert not _listening(port)
