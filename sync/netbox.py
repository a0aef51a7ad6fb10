"""Reading NetBox through pynetbox: the objects the mapping needs, as plain dicts.

One loader, for the whole fleet (``gpuinv sync``) or for one device or VM (``only``: a
webhook's target). A handful of list calls either way (pynetbox pages through them), never
one call per device: a fleet of thousands loads in seconds. Connection problems are retried
with backoff; what still fails raises NetBoxUnavailable naming the URL, so the inventory
keeps serving and the sync state records the error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pynetbox
import requests

from sync.mapping import Mapping
from sync.parts import Record
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
DEVICE, VM = "device", "vm"


@dataclass(frozen=True)
class Target:
    """A NetBox object to re-sync: a device (server or switch) or a virtual machine."""

    family: str  # DEVICE | VM
    netbox_id: int


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


Read = Callable[[str, Callable[[], Iterable[Any]]], list[Record]]


def load(
    api: pynetbox.api,
    mapping: Mapping,
    step: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    only: Target | None = None,
) -> Snapshot:
    """Everything the translation needs, read with retries: the whole fleet, or ``only``
    one device or VM with what its documents need (see ``_target``)."""
    step = step or (lambda name: None)

    def read(name: str, call: Callable[[], Iterable[Any]]) -> list[Record]:
        step(name)
        return _with_retries(api.base_url, name, lambda: [dict(r) for r in call()], sleep)

    sites = read("sites", lambda: api.dcim.sites.all())
    if only is not None:
        return _target(api, mapping, read, only, sites)
    # NetBox refuses a filter on a role it does not have, so ask only for those it has.
    existing = {r["slug"] for r in read("device roles", lambda: api.dcim.device_roles.all())}
    roles = [r for r in (*mapping.device_roles, *mapping.switch_roles) if r in existing]
    return Snapshot(
        devices=read("devices", lambda: api.dcim.devices.filter(role=roles)) if roles else [],
        sites=sites,
        module_types=read("module types", lambda: api.dcim.module_types.all()),
        modules=read("modules", lambda: api.dcim.modules.all()),
        inventory_items=read("inventory items", lambda: api.dcim.inventory_items.filter(role="gpu"))
        if _has_gpu_role(api, read)
        else [],
        interfaces=read(
            "interfaces", lambda: api.dcim.interfaces.filter(type=list(INFINIBAND_TYPES))
        ),
        virtual_machines=read(
            "virtual machines", lambda: api.virtualization.virtual_machines.all()
        ),
    )


def _target(
    api: pynetbox.api, mapping: Mapping, read: Read, target: Target, sites: list[Record]
) -> Snapshot:
    """One device or VM, and the objects of the same name (another site's device of that
    name and tenant makes both unsyncable, and only a full view shows it); empty if it is
    gone (or no longer has a role the mapping syncs), so that the diff retires or flags it.
    A device brings its cabled switches: their fabric tag is its ports' fabric (and they
    are re-synced with it, which changes nothing when they are in step)."""
    number = target.netbox_id
    if target.family == VM:
        vms = api.virtualization.virtual_machines
        found = read(f"virtual machine #{number}", lambda: vms.filter(id=number))
        if not found:
            return Snapshot(sites=sites)
        name = found[0].get("name")
        # Without a name, no namesakes (and filter(name=None) would list every VM).
        same_name = read("virtual machines", lambda: vms.filter(name=name)) if name else found
        return Snapshot(sites=sites, virtual_machines=same_name)
    found = read(f"device #{number}", lambda: api.dcim.devices.filter(id=number))
    roles = (*mapping.device_roles, *mapping.switch_roles)
    if not found or _role(found[0]) not in roles:
        return Snapshot(sites=sites)
    device = found[0]
    # An unnamed device has no namesakes (and filter(name=None) would list every device).
    namesakes = (
        read("devices", lambda: api.dcim.devices.filter(name=device["name"]))
        if device.get("name")
        else []
    )
    devices = {d["id"]: d for d in [device, *namesakes] if _role(d) in roles}
    ids = sorted(devices)
    modules = read("modules", lambda: api.dcim.modules.filter(device_id=ids))
    type_ids = sorted({m["module_type"]["id"] for m in modules if m.get("module_type")})
    module_types = (
        read("module types", lambda: api.dcim.module_types.filter(id=type_ids)) if type_ids else []
    )
    interfaces = read(
        "interfaces",
        lambda: api.dcim.interfaces.filter(device_id=ids, type=list(INFINIBAND_TYPES)),
    )
    peers = [p for i in interfaces for p in i.get("link_peers") or [] if "device" in p]
    peer_names = sorted({p["device"]["name"] for p in peers})
    # By name, so that a cabled switch's namesakes come too (see above).
    cabled = read("devices", lambda: api.dcim.devices.filter(name=peer_names)) if peer_names else []
    switches = [d for d in cabled if _role(d) in mapping.switch_roles and d["id"] not in devices]
    return Snapshot(
        devices=[*devices.values(), *switches],
        sites=sites,
        module_types=module_types,
        modules=modules,
        inventory_items=read(
            "inventory items", lambda: api.dcim.inventory_items.filter(device_id=ids, role="gpu")
        )
        if _has_gpu_role(api, read)
        else [],
        interfaces=interfaces,
    )


def _role(device: Record) -> str | None:
    return (device.get("role") or {}).get("slug")


def _has_gpu_role(api: pynetbox.api, read: Read) -> bool:
    """NetBox refuses a filter on an inventory item role it does not have."""
    roles = api.dcim.inventory_item_roles
    return bool(read("inventory item roles", lambda: roles.filter(slug="gpu")))


def _with_retries(
    url: str, what: str, call: Callable[[], list[dict[str, Any]]], sleep: Callable[[float], None]
) -> list[dict[str, Any]]:
    delay = 1.0
    problem = ""  # ATTEMPTS > 0: set by the first failed attempt
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        except requests.RequestException as exc:  # e.g. a malformed URL: retrying won't help
            raise NetBoxUnavailable(f"NetBox at {url} could not list {what}: {exc}") from exc
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
