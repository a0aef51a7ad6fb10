"""Why the service refuses a NetBox webhook is in the service's own log, not only in the
answer (which NetBox shows in its rqworker's log alone): a WARNING at each refusal."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.db.session import make_engine, upgrade_to_head
from api.settings import Settings
from tests.support.server import ServerThread

SECRET = "a-webhook-secret"
EVENT = json.dumps({"object_type": "dcim.device", "data": {"id": 1}}).encode()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """Start the real service with these settings (a fresh SQLite inventory)."""
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    running: list[ServerThread] = []

    def start(**settings: str) -> str:
        server = ServerThread(Settings(database_url=url, lease_sweep_seconds=3600, **settings))
        running.append(server.__enter__())
        return f"{server.url}/hooks/netbox"

    yield start
    for server in running:
        server.__exit__(None, None, None)


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gpuinv.sync" and r.levelno == logging.WARNING
    ]


def _signed(secret: str) -> dict[str, str]:
    return {"X-Hook-Signature": hmac.new(secret.encode(), EVENT, hashlib.sha512).hexdigest()}


def test_no_webhook_secret_is_logged_at_each_refusal(serve, caplog) -> None:
    caplog.set_level(logging.INFO)
    url = serve()  # no GPUINV_NETBOX_WEBHOOK_SECRET
    for _ in range(2):
        answer = httpx.post(url, content=EVENT, headers=_signed(SECRET), timeout=30)
        assert answer.status_code == 503
        assert "GPUINV_NETBOX_WEBHOOK_SECRET" in answer.json()["error"]
    reason = "NetBox webhooks are off: set GPUINV_NETBOX_WEBHOOK_SECRET"
    assert _refusals(caplog) == [f"netbox webhook refused (503): {reason}"] * 2


def test_no_netbox_url_or_token_is_logged(serve, caplog) -> None:
    caplog.set_level(logging.INFO)
    url = serve(netbox_webhook_secret=SECRET)  # no NETBOX_URL / NETBOX_TOKEN
    answer = httpx.post(url, content=EVENT, headers=_signed(SECRET), timeout=30)
    assert answer.status_code == 503
    [message] = _refusals(caplog)
    assert message == (
        "netbox webhook refused (503): set NETBOX_URL and NETBOX_TOKEN so the service can "
        "read NetBox"
    )


def test_a_secret_that_does_not_match_netboxs_is_logged(serve, caplog) -> None:
    caplog.set_level(logging.INFO)
    url = serve(netbox_webhook_secret=SECRET)
    answer = httpx.post(url, content=EVENT, headers=_signed("netbox-has-another"), timeout=30)
    assert answer.status_code == 401
    assert _refusals(caplog) == [
        "netbox webhook refused (401): X-Hook-Signature is missing or does not match the body"
    ]
