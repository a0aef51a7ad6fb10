"""`gpuinv sync --watch`: two real worker processes on one database, one leads; NetBox
changes keep arriving; when the leader dies, the other takes over once its lease lapses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import DeviceRow, SyncStateRow
from tests.netbox.fixture import NetBox
from tests.netbox.sample import Fleet
from tests.support.sync import eventually

pytestmark = pytest.mark.xdist_group("netbox")
GPUINV = Path(sys.executable).with_name("gpuinv")


@pytest.fixture
def workers(clean_netbox: NetBox, database_url: str, db, tmp_path: Path) -> Iterator[list]:
    env = {
        **os.environ,
        "NETBOX_URL": clean_netbox.url,
        "NETBOX_TOKEN": clean_netbox.token,
        "GPUINV_DATABASE_URL": database_url,
    }
    started = []
    for n in range(2):
        log = (tmp_path / f"worker-{n}.log").open("w")
        started.append(
            subprocess.Popen(
                [str(GPUINV), "sync", "--watch", "--interval", "1"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _leader(db: sessionmaker[Session]) -> str | None:
    with db() as session:
        state = session.get(SyncStateRow, "netbox")
        return state.leader if state else None


def _devices(db: sessionmaker[Session]) -> int:
    with db() as session:
        return session.scalar(select(func.count()).select_from(DeviceRow))


def test_one_worker_leads_and_the_other_takes_over_when_it_dies(
    clean_netbox: NetBox, workers: list[subprocess.Popen], db: sessionmaker[Session]
) -> None:
    fleet = Fleet.build(clean_netbox.api(), servers=1)
    eventually(lambda: _devices(db) == 2, "the server and the VM synced")
    leader = _leader(db)
    pids = {f":{p.pid}": p for p in workers}
    [leading] = [p for suffix, p in pids.items() if leader and leader.endswith(suffix)]

    server = fleet.nb.dcim.devices.get(fleet.ids["gpu-001"])
    server.serial = "SN-WATCHED"
    server.save()
    eventually(lambda: _serial(db) == "SN-WATCHED", "the NetBox change synced by the watch")

    leading.kill()  # a crash: no chance to give up the lease
    leading.wait(timeout=30)
    # The lease lapses 10 s after its last renewal; the rest is the other worker's own
    # cycle against NetBox, which took over 50 s on a loaded 2-core CI machine.
    eventually(lambda: _leader(db) not in (None, leader), "the other worker leading", timeout=120)
    with db() as session:
        assert session.get(SyncStateRow, "netbox").last_success_at is not None


def _serial(db: sessionmaker[Session]) -> str | None:
    with db() as session:
        return session.scalar(select(DeviceRow.serial).where(DeviceRow.hostname == "gpu-001"))
