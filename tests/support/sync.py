"""Running `gpuinv sync` against the test NetBox (:mod:`tests.netbox`), and what the sync
tests share."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from click.testing import CliRunner, Result

from api.cli import main
from tests.netbox.fixture import NetBox


def eventually(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait for something another process does (NetBox's rqworker, a sync worker)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"did not happen within {timeout:.0f} s: {what}")
        time.sleep(0.3)


def run_sync(
    netbox: NetBox, database_url: str, *args: str, env: dict[str, str] | None = None
) -> Result:
    """`gpuinv sync ARGS` against the test NetBox and the test database, in process."""
    return CliRunner().invoke(
        main,
        ["sync", *args],
        env={
            "NETBOX_URL": netbox.url,
            "NETBOX_TOKEN": netbox.token,
            "GPUINV_DATABASE_URL": database_url,
            **(env or {}),
        },
        catch_exceptions=False,
    )


# The secret the tests' services check NetBox's webhook signatures with (the ``service``
# fixture of tests/sync/conftest.py).
WEBHOOK_SECRET = "webhook-secret-for-tests"

# Labels that match one server by its hostname (variable "host").
ONE_GPU_SERVER = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [{"type": "match", "keyInVariable": "host", "keyInDevice": "hostname"}]
    ),
}
