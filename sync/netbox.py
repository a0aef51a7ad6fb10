"""Reading NetBox through pynetbox: the objects the mapping needs, as plain dicts.

A handful of list calls (pynetbox pages through them), never one call per device: a fleet
of thousands loads in seconds. Connection problems are retried with backoff; what still
fails raises NetBoxUnavailable naming the URL, so the inventory keeps serving and the sync
state records the error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pynetbox
import requests

from sync.mapping import Mapping
from sync.translate import Snapshot

# NetBox 4.7's InfiniBand interface types (dcim.choices.InterfaceTypeChoices): every
# rate at 1X and 4X, and only HDR, NDR and XDR at 2X.
_RATES = ("sdr", "ddr", "qdr", "fdr10", "fdr", "edr", "hdr", "ndr", "xdr")
INFINIBAND_TYPES = (
    *(f"infiniband-{rate}" for rate in _RATES),
    *(f"infiniband-{rate}-2x" for rate in ("hdr", "ndr", "xdr")),
    *(f"infiniband-{rate}-4x" for rate in _RATES),
)
TIMEOUT = 30.0  # seconds per HTTP request
ATTEMPTS = 4


class NetBoxUnavailable(Exception):
    """NetBox could not be read (after retries); the message names the URL and the error."""


class _TimeoutSession(requests.Session):
    """pynetbox has no timeout setting; a slow NetBox must not hang the worker forever."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(*args, **kwargs)


def connect(url: str, token: str) -> pynetbox.api:
    api = pynetbox.api(url.rstrip("/").removesuffix("/api"), token=token)
    api.http_session = _TimeoutSession()
    return api


def load(
    api: pynetbox.api,
    mapping: Mapping,
    step: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Snapshot:
    """Everything the translation needs, read with retries."""
    step = step or (lambda name: None)

    def read(name: str, call: Callable[[], Iterable[Any]]) -> list[dict[str, Any]]:
        step(name)
        return _with_retries(api.base_url, name, lambda: [dict(r) for r in call()], sleep)

    # NetBox refuses a filter on a role it does not have, so ask only for those it has.
    existing = {r["slug"] for r in read("device roles", lambda: api.dcim.device_roles.all())}
    roles = [r for r in (*mapping.device_roles, *mapping.switch_roles) if r in existing]
    return Snapshot(
        devices=read("devices", lambda: api.dcim.devices.filter(role=roles)) if roles else [],
        sites=read("sites", lambda: api.dcim.sites.all()),
        module_types=read("module types", lambda: api.dcim.module_types.all()),
        modules=read("modules", lambda: api.dcim.modules.all()),
        inventory_items=read("inventory items", lambda: api.dcim.inventory_items.filter(role="gpu"))
        if _has(api, "inventory item roles", api.dcim.inventory_item_roles, "gpu", sleep)
        else [],
        interfaces=read(
            "interfaces", lambda: api.dcim.interfaces.filter(type=list(INFINIBAND_TYPES))
        ),
        virtual_machines=read(
            "virtual machines", lambda: api.virtualization.virtual_machines.all()
        ),
    )


def _has(
    api: pynetbox.api, what: str, endpoint: Any, slug: str, sleep: Callable[[float], None]
) -> bool:
    found = _with_retries(
        api.base_url, what, lambda: [dict(r) for r in endpoint.filter(slug=slug)], sleep
    )
    return bool(found)


def _with_retries(
    url: str, what: str, call: Callable[[], list[dict[str, Any]]], sleep: Callable[[float], None]
) -> list[dict[str, Any]]:
    delay = 1.0
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        except pynetbox.RequestError as exc:
            status = exc.req.status_code
            if status < 500 and status != 429:  # our request is wrong: retrying won't help
                raise NetBoxUnavailable(
                    f"NetBox at {url} refused to list {what}: HTTP {status}: {exc.error}"
                ) from exc
            problem = f"HTTP {status}"
        if attempt == ATTEMPTS:
            break
        sleep(delay)
        delay *= 2
    raise NetBoxUnavailable(
        f"NetBox at {url} did not answer listing {what} after {ATTEMPTS} attempts: {problem}"
    )
