"""Tests of the NetBox sync worker, against a real NetBox 4.7.3 (see tests/netbox/fixture.py).

The ``netbox`` and ``clean_netbox`` fixtures come from ``tests.netbox.plugin``, registered in
the top-level ``tests/conftest.py`` (pytest accepts ``pytest_plugins`` only there). Mark NetBox
tests ``pytestmark = pytest.mark.xdist_group("netbox")``: there is one NetBox per machine, and
``--dist loadgroup`` keeps them in one xdist worker (the plugin also serialises them).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import Result
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings
from tests.netbox.fixture import NetBox
from tests.support.server import ServerThread
from tests.support.sync import WEBHOOK_SECRET, run_sync


@pytest.fixture
def sync(clean_netbox: NetBox, database_url: str, db: sessionmaker[Session]):
    """Runs `gpuinv sync ARGS` against the test NetBox and the test database."""

    def run(*args: str, ok: bool = True, env: dict[str, str] | None = None) -> Result:
        result = run_sync(clean_netbox, database_url, *args, env=env)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return run


@pytest.fixture
def service(clean_netbox: NetBox, database_url: str, db) -> Iterator[ServerThread]:
    """The API on a loopback port, taking NetBox's webhooks signed with WEBHOOK_SECRET."""
    settings = Settings(
        database_url=database_url,
        lease_sweep_seconds=3600,
        netbox_url=clean_netbox.url,
        netbox_token=clean_netbox.token,
        netbox_webhook_secret=WEBHOOK_SECRET,
    )
    with ServerThread(settings) as running:
        yield running
