"""Racing writers: the generation guard lets exactly one of them win, on both backends."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import inventory
from api.db.models import AuditEventRow, DeviceRow
from api.db.session import lost_races_as_domain_errors, unit_of_work
from api.domain.access import cli_principal
from api.domain.errors import CONCURRENT_UPDATE, DomainError
from api.domain.vocabulary import Kind

WRITERS = 16


def test_sixteen_racing_updates_of_one_generation_have_one_winner(
    db: sessionmaker[Session],
) -> None:
    who = cli_principal()
    with unit_of_work(db) as session:
        device = inventory.create(session, who, Kind.BAREMETAL, {"hostname": "gpu-1"})
    barrier = threading.Barrier(WRITERS)

    def write(n: int) -> str:
        session = db()
        try:
            current = session.scalar(select(DeviceRow).where(DeviceRow.id == device.id))
            assert current is not None and current.generation == 1
            barrier.wait(timeout=30)  # everyone has read generation 1 before anyone writes
            with lost_races_as_domain_errors():
                inventory.update(session, who, Kind.BAREMETAL, device.id, {"rack": f"r{n}"}, 1)
                session.commit()
            return "won"
        except DomainError as exc:
            session.rollback()
            return exc.code
        finally:
            session.close()

    with ThreadPoolExecutor(WRITERS) as pool:
        outcomes = list(pool.map(write, range(WRITERS)))
    assert outcomes.count("won") == 1
    assert outcomes.count(CONCURRENT_UPDATE) == WRITERS - 1
    with db() as session:
        stored = session.get(DeviceRow, device.id)
        updates = session.scalars(
            select(AuditEventRow).where(
                AuditEventRow.object_id == device.id, AuditEventRow.action == "update"
            )
        )
        assert stored is not None and stored.generation == 2
        assert [e.after["rack"] for e in updates] == [stored.rack]
