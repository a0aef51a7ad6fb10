"""sync/diff.py on plain data: what NetBox wants (documents) and what the inventory holds
(items) in, the changes and the notes out. The NetBox -> document translation is tested in
test_sync_translate.py, and the whole sync against a real NetBox in tests/sync."""

from __future__ import annotations

from typing import Any

import pytest

from sync.diff import (
    NETBOX_DEGRADED,
    NETBOX_DELETED,
    NETBOX_TENANT_CHANGED,
    Change,
    Held,
    diff,
)
from sync.translate import Desired, Note

Wanted = tuple[str, str | None, str, dict[str, Any]]  # (kind, tenant, name, document)
NAME_FIELD = {"baremetal": "hostname", "vm": "hostname", "switch": "name"}


def nb(
    netbox_id: int,
    name: str,
    *,
    kind: str = "baremetal",
    tenant: str | None = None,
    status: str = "available",
    **fields: Any,
) -> Wanted:
    """A document as NetBox wants it (a tenant absent in NetBox is left out of it)."""
    document = {
        NAME_FIELD[kind]: name,
        "status": status,
        "source": {"system": "netbox", "id": netbox_id},
        **({"tenant": tenant} if tenant else {}),
        **fields,
    }
    return (kind, tenant, name, document)


def item(
    item_id: str,
    name: str,
    netbox_id: int | None = None,
    *,
    kind: str = "baremetal",
    tenant: str | None = None,
    status: str = "available",
    held: bool = False,
    attention: tuple[str, ...] = (),
    **fields: Any,
) -> Held:
    """An inventory item as the diff sees it: synced from NetBox ``netbox_id``, or manual."""
    source = {"system": "netbox", "id": netbox_id} if netbox_id else {"system": "manual"}
    document = {
        "id": item_id,
        NAME_FIELD[kind]: name,
        "status": status,
        "tenant": tenant,
        "project": None,
        "source": source,
        **fields,
    }
    return Held(kind, name, document, held, attention)


def desired(
    *wanted: Wanted,
    skipped: set[tuple[str, int]] | None = None,
    clashes: set[tuple[str, str | None, str]] | None = None,
) -> Desired:
    into = Desired(skipped=skipped or set(), clashes=clashes or set())
    places = {"baremetal": into.devices, "vm": into.vms, "switch": into.switches}
    for kind, tenant, name, document in wanted:
        places[kind][(tenant, name)] = document
    return into


def summary(change: Change) -> tuple[Any, ...]:
    """A change as (action, key, NetBox id, item id, fields, code)."""
    return (
        change.action,
        change.key,
        change.netbox_id,
        change.item_id,
        change.fields,
        change.code,
    )


NB1 = {"system": "netbox", "id": 1}
MANUAL = {"system": "manual"}

# (wanted from NetBox, held by the inventory) -> the changes, as summary() gives them
CASES = {
    "nothing anywhere: nothing to do": ([], [], []),
    "a new NetBox device is created": (
        [nb(1, "gpu-01", totalcpu=64)],
        [],
        [
            (
                "create",
                "gpu-01",
                1,
                None,
                {
                    "hostname": (None, "gpu-01"),
                    "status": (None, "available"),
                    "source": (None, NB1),
                    "totalcpu": (None, 64),
                },
                None,
            )
        ],
    ),
    "an item that is as NetBox says: nothing to do": (
        [nb(1, "gpu-01", totalcpu=64)],
        [item("i-1", "gpu-01", 1, totalcpu=64)],
        [],
    ),
    "a changed fact is updated, naming only what changed": (
        [nb(1, "gpu-01", totalcpu=128, rack="r1")],
        [item("i-1", "gpu-01", 1, totalcpu=64, rack="r1")],
        [("update", "gpu-01", 1, "i-1", {"totalcpu": (64, 128)}, None)],
    ),
    "a fact NetBox does not give is left alone": (
        [nb(1, "gpu-01")],
        [item("i-1", "gpu-01", 1, rack="r1")],
        [],
    ),
    "a status change of a free item is applied": (
        [nb(1, "gpu-01", status="maintenance")],
        [item("i-1", "gpu-01", 1)],
        [("update", "gpu-01", 1, "i-1", {"status": ("available", "maintenance")}, None)],
    ),
    "a status change of a held item is flagged, not applied": (
        [nb(1, "gpu-01", status="maintenance")],
        [item("i-1", "gpu-01", 1, status="allocated", held=True)],
        [
            (
                "flag",
                "gpu-01",
                1,
                "i-1",
                {"status": ("allocated", "maintenance")},
                NETBOX_DEGRADED,
            )
        ],
    ),
    "a held item is flagged once, not on every sync": (
        [nb(1, "gpu-01", status="maintenance")],
        [item("i-1", "gpu-01", 1, status="allocated", held=True, attention=(NETBOX_DEGRADED,))],
        [],
    ),
    "a held item's other facts are still updated beside the flag": (
        [nb(1, "gpu-01", status="offline", totalcpu=128)],
        [item("i-1", "gpu-01", 1, status="allocated", held=True, totalcpu=64)],
        [
            ("update", "gpu-01", 1, "i-1", {"totalcpu": (64, 128)}, None),
            ("flag", "gpu-01", 1, "i-1", {"status": ("allocated", "offline")}, NETBOX_DEGRADED),
        ],
    ),
    "a held item available in NetBox: its status is the inventory's": (
        [nb(1, "gpu-01")],
        [item("i-1", "gpu-01", 1, status="allocated", held=True)],
        [],
    ),
    "a held item healthy again in NetBox loses its flag, keeps its status": (
        [nb(1, "gpu-01")],
        [item("i-1", "gpu-01", 1, status="allocated", held=True, attention=(NETBOX_DEGRADED,))],
        [("update", "gpu-01", 1, "i-1", {"attention": ([NETBOX_DEGRADED], None)}, None)],
    ),
    "a released item takes NetBox's status and loses its flags": (
        [nb(1, "gpu-01", status="maintenance")],
        [item("i-1", "gpu-01", 1, attention=(NETBOX_DEGRADED,))],
        [
            (
                "update",
                "gpu-01",
                1,
                "i-1",
                {"status": ("available", "maintenance"), "attention": ([NETBOX_DEGRADED], None)},
                None,
            )
        ],
    ),
    "a free item deleted in NetBox is retired": (
        [],
        [item("i-1", "gpu-01", 1)],
        [("retire", "gpu-01", 1, "i-1", {"status": ("available", "retired")}, None)],
    ),
    "a retired item loses its flags": (
        [],
        [item("i-1", "gpu-01", 1, status="maintenance", attention=(NETBOX_DEGRADED,))],
        [
            (
                "retire",
                "gpu-01",
                1,
                "i-1",
                {"status": ("maintenance", "retired"), "attention": ([NETBOX_DEGRADED], None)},
                None,
            )
        ],
    ),
    "a held item deleted in NetBox is flagged, not retired": (
        [],
        [item("i-1", "gpu-01", 1, status="allocated", held=True)],
        [("flag", "gpu-01", 1, "i-1", {}, NETBOX_DELETED)],
    ),
    "a held item deleted in NetBox is flagged once": (
        [],
        [item("i-1", "gpu-01", 1, status="allocated", held=True, attention=(NETBOX_DELETED,))],
        [],
    ),
    "a held item back in NetBox loses the deleted flag": (
        [nb(1, "gpu-01")],
        [item("i-1", "gpu-01", 1, status="allocated", held=True, attention=(NETBOX_DELETED,))],
        [("update", "gpu-01", 1, "i-1", {"attention": ([NETBOX_DELETED], None)}, None)],
    ),
    "an item already retired is not retired again": (
        [],
        [item("i-1", "gpu-01", 1, status="retired")],
        [],
    ),
    "an item the inventory did not get from NetBox is never retired": (
        [],
        [item("m-1", "gpu-01"), item("m-2", "leaf-1", kind="switch")],
        [],
    ),
    "a manual item of the same name and namespace is adopted, not duplicated": (
        [nb(1, "gpu-01")],
        [item("m-1", "gpu-01")],
        [("update", "gpu-01", 1, "m-1", {"source": (MANUAL, NB1)}, None)],
    ),
    "a name alone never matches across tenants": (
        [nb(1, "gpu-01")],
        [item("m-1", "gpu-01", tenant="acme")],
        [
            (
                "create",
                "gpu-01",
                1,
                None,
                {
                    "hostname": (None, "gpu-01"),
                    "status": (None, "available"),
                    "source": (None, NB1),
                },
                None,
            )
        ],
    ),
    "a tenant change in NetBox moves the same item": (
        [nb(1, "gpu-01", tenant="acme")],
        [item("i-1", "gpu-01", 1)],
        [("update", "gpu-01", 1, "i-1", {"tenant": (None, "acme")}, None)],
    ),
    "a moved item leaves its project behind": (
        [nb(1, "gpu-01", tenant="beta")],
        [item("i-1", "gpu-01", 1, tenant="acme", project="training")],
        [
            (
                "update",
                "gpu-01",
                1,
                "i-1",
                {"tenant": ("acme", "beta"), "project": ("training", None)},
                None,
            )
        ],
    ),
    "a tenant absent in NetBox leaves the inventory's tenant": (
        [nb(1, "gpu-01")],
        [item("i-1", "gpu-01", 1, tenant="acme", project="training")],
        [],
    ),
    "a held item's tenant change is flagged, not applied": (
        [nb(1, "gpu-01", tenant="beta")],
        [item("i-1", "gpu-01", 1, tenant="acme", status="allocated", held=True)],
        [
            (
                "flag",
                "gpu-01",
                1,
                "i-1",
                {"tenant": ("acme", "beta")},
                NETBOX_TENANT_CHANGED,
            )
        ],
    ),
    "a held item still in another tenant in NetBox keeps its flag": (
        [nb(1, "gpu-01", tenant="beta")],
        [
            item(
                "i-1",
                "gpu-01",
                1,
                tenant="acme",
                status="allocated",
                held=True,
                attention=(NETBOX_TENANT_CHANGED,),
            )
        ],
        [],
    ),
    "a held item whose tenant is the inventory's again loses that flag": (
        [nb(1, "gpu-01", tenant="acme")],
        [
            item(
                "i-1",
                "gpu-01",
                1,
                tenant="acme",
                status="allocated",
                held=True,
                attention=(NETBOX_TENANT_CHANGED,),
            )
        ],
        [("update", "gpu-01", 1, "i-1", {"attention": ([NETBOX_TENANT_CHANGED], None)}, None)],
    ),
    "a released item's tenant change is applied and its flag goes": (
        [nb(1, "gpu-01", tenant="beta")],
        [item("i-1", "gpu-01", 1, tenant="acme", attention=(NETBOX_TENANT_CHANGED,))],
        [
            (
                "update",
                "gpu-01",
                1,
                "i-1",
                {"tenant": ("acme", "beta"), "attention": ([NETBOX_TENANT_CHANGED], None)},
                None,
            )
        ],
    ),
    "switches and VMs are synced like servers": (
        [nb(7, "leaf-1", kind="switch", status="offline"), nb(1, "vm-01", kind="vm")],
        [item("s-7", "leaf-1", 7, kind="switch"), item("v-1", "vm-01", 1, kind="vm")],
        [("update", "leaf-1", 7, "s-7", {"status": ("available", "offline")}, None)],
    ),
}


@pytest.mark.parametrize(("wanted", "current", "expected"), CASES.values(), ids=CASES.keys())
def test_the_changes_that_bring_the_inventory_in_step(
    wanted: list[Wanted], current: list[Held], expected: list[tuple[Any, ...]]
) -> None:
    notes: list[Note] = []
    assert [summary(c) for c in diff(desired(*wanted), current, notes)] == expected
    assert notes == []


@pytest.mark.parametrize(
    ("skipped", "clashes", "retired"),
    [
        (set(), set(), True),
        ({("device", 1)}, set(), False),  # NetBox device #1 still exists: kept
        ({("vm", 1)}, set(), True),  # VM #1 is another object: devices and VMs count apart
        (set(), {("baremetal", None, "gpu-01")}, False),  # its name is shared in NetBox: kept
        (set(), {("baremetal", "acme", "gpu-01")}, True),  # a namesake in another tenant
        (set(), {("vm", None, "gpu-01")}, True),  # a VM of that name is another item
    ],
)
def test_only_what_netbox_no_longer_has_is_retired(
    skipped: set[tuple[str, int]], clashes: set[tuple[str, str | None, str]], retired: bool
) -> None:
    changes = diff(desired(skipped=skipped, clashes=clashes), [item("i-1", "gpu-01", 1)])
    assert [c.action for c in changes] == (["retire"] if retired else [])


def test_a_vm_skipped_in_netbox_is_kept_by_its_own_id() -> None:
    current = [item("v-1", "vm-01", 1, kind="vm")]
    assert diff(desired(skipped={("vm", 1)}), current) == []
    assert [c.action for c in diff(desired(skipped={("device", 1)}), current)] == ["retire"]


def test_a_create_writes_the_whole_document() -> None:
    wanted = nb(1, "gpu-01", tenant="acme", status="maintenance", totalcpu=64)
    [create] = diff(desired(wanted), [])
    assert create.patch == wanted[3] and create.patch is not wanted[3]
    assert create.item_id is None and create.code is None


@pytest.mark.parametrize(
    ("current", "patch"),
    [
        (  # a fact changed: every fact NetBox gives is written, its status left alone
            item("i-1", "gpu-01", 1, totalcpu=64),
            {"hostname": "gpu-01", "source": NB1, "totalcpu": 128},
        ),
        (  # the status changed too: written with the rest
            item("i-1", "gpu-01", 1, status="offline", totalcpu=64),
            {"hostname": "gpu-01", "source": NB1, "totalcpu": 128, "status": "available"},
        ),
        (  # a held item's status is never written
            item("i-1", "gpu-01", 1, status="allocated", held=True, totalcpu=64),
            {"hostname": "gpu-01", "source": NB1, "totalcpu": 128},
        ),
    ],
)
def test_an_update_writes_what_netbox_gives_but_a_held_status(
    current: Held, patch: dict[str, Any]
) -> None:
    [update] = [c for c in diff(desired(nb(1, "gpu-01", totalcpu=128)), [current]) if c.patch]
    assert update.action == "update" and update.patch == patch


def test_a_move_writes_the_new_tenant_and_no_project() -> None:
    current = [item("i-1", "gpu-01", 1, tenant="acme", project="training")]
    [update] = diff(desired(nb(1, "gpu-01", tenant="beta")), current)
    assert update.patch is not None
    assert (update.patch["tenant"], update.patch["project"]) == ("beta", None)


def test_a_held_item_is_not_moved() -> None:
    current = [item("i-1", "gpu-01", 1, tenant="acme", status="allocated", held=True, cpu=1)]
    update, flag = diff(desired(nb(1, "gpu-01", tenant="beta", cpu=2)), current)
    assert update.patch is not None and "tenant" not in update.patch
    assert update.fields == {"cpu": (1, 2)}
    assert (flag.action, flag.code) == ("flag", NETBOX_TENANT_CHANGED)


def test_a_move_onto_a_taken_name_waits_and_says_so() -> None:
    synced = item("i-1", "gpu-01", 1, totalcpu=64)
    manual = item("m-1", "gpu-01", tenant="acme")
    notes: list[Note] = []
    changes = diff(desired(nb(1, "gpu-01", tenant="acme", totalcpu=128)), [synced, manual], notes)
    # the other facts are updated where it is; neither the tenant nor the manual item move
    assert [summary(c) for c in changes] == [
        ("update", "gpu-01", 1, "i-1", {"totalcpu": (64, 128)}, None)
    ]
    assert changes[0].patch is not None and "tenant" not in changes[0].patch
    assert notes == [
        Note(
            "baremetal",
            "gpu-01",
            "NetBox #1 moved it to tenant 'acme', where the inventory's baremetal 'gpu-01' "
            "is a manual item (id m-1); it stays in the platform (no tenant) until that name "
            "is free",
        )
    ]


def test_a_name_held_by_another_netbox_object_is_not_taken_over() -> None:
    # NetBox #1 is still there (unusable), so its item keeps the name #2 now asks for.
    notes: list[Note] = []
    current = [item("i-1", "gpu-01", 1)]
    assert diff(desired(nb(2, "gpu-01"), skipped={("device", 1)}), current, notes) == []
    assert notes == [
        Note(
            "skipped",
            "gpu-01",
            "NetBox device #2: not synced while the inventory's baremetal 'gpu-01' in the "
            "platform (no tenant) is NetBox #1's",
        )
    ]


def test_a_name_another_object_moves_away_from_is_not_taken_in_the_same_sync() -> None:
    # #1 moves to acme; #2 asks for the platform's gpu-01, which is still #1's item
    notes: list[Note] = []
    current = [item("i-1", "gpu-01", 1)]
    changes = diff(desired(nb(1, "gpu-01", tenant="acme"), nb(2, "gpu-01")), current, notes)
    assert [summary(c) for c in changes] == [
        ("update", "gpu-01", 1, "i-1", {"tenant": (None, "acme")}, None)
    ]
    assert [(n.kind, n.key) for n in notes] == [("skipped", "gpu-01")]
    assert "NetBox device #2" in notes[0].message and "NetBox #1's" in notes[0].message


AVAILABLE_TO_RETIRED = {"status": ("available", "retired")}


@pytest.mark.parametrize(
    ("copies", "expected"),
    [
        pytest.param(
            [item("a", "gpu-01", 1, tenant="beta"), item("b", "gpu-01", 1, tenant="acme")],
            [("retire", "gpu-01", 1, "a", AVAILABLE_TO_RETIRED, None)],
            id="the one in the namespace NetBox says",
        ),
        pytest.param(
            [
                item("a", "gpu-01", 1, tenant="beta"),
                item("b", "gpu-01", 1, tenant="acme", status="retired"),
            ],
            [
                ("update", "gpu-01", 1, "b", {"status": ("retired", "available")}, None),
                ("retire", "gpu-01", 1, "a", AVAILABLE_TO_RETIRED, None),
            ],
            id="the one in the namespace NetBox says, even retired",
        ),
        pytest.param(
            [
                item("a", "gpu-01", 1, tenant="beta", status="retired"),
                item("b", "gpu-01", 1, tenant="gamma"),
            ],
            [("update", "gpu-01", 1, "b", {"tenant": ("gamma", "acme")}, None)],
            id="else a live one",
        ),
        pytest.param(
            [
                item("a", "gpu-01", 1, tenant="beta", status="retired"),
                item("b", "gpu-01", 1, tenant="gamma", status="retired"),
            ],
            [
                (
                    "update",
                    "gpu-01",
                    1,
                    "a",
                    {"tenant": ("beta", "acme"), "status": ("retired", "available")},
                    None,
                )
            ],
            id="else the first",
        ),
    ],
)
def test_of_several_items_of_one_netbox_object_one_is_it_and_the_others_go(
    copies: list[Held], expected: list[tuple[Any, ...]]
) -> None:
    assert [summary(c) for c in diff(desired(nb(1, "gpu-01", tenant="acme")), copies)] == expected


def test_changes_come_created_updated_retired_flagged_then_by_kind_and_name() -> None:
    wanted = [
        nb(5, "gpu-05"),
        nb(4, "gpu-04"),
        nb(9, "leaf-9", kind="switch"),
        nb(2, "gpu-02", status="offline"),
        nb(3, "vm-03", kind="vm", status="offline"),
    ]
    current = [
        item("i-3", "vm-03", 3, kind="vm"),
        item("i-2", "gpu-02", 2),
        item("i-7", "gpu-07", 7, status="allocated", held=True),
        item("i-6", "gpu-06", 6),
        item("i-8", "leaf-8", 8, kind="switch"),
    ]
    changes = diff(desired(*wanted), current)
    assert [(c.action, c.kind, c.key) for c in changes] == [
        ("create", "baremetal", "gpu-04"),
        ("create", "baremetal", "gpu-05"),
        ("create", "switch", "leaf-9"),
        ("update", "baremetal", "gpu-02"),
        ("update", "vm", "vm-03"),
        ("retire", "baremetal", "gpu-06"),
        ("retire", "switch", "leaf-8"),
        ("flag", "baremetal", "gpu-07"),
    ]


def test_the_same_name_in_two_tenants_orders_by_netbox_id() -> None:
    changes = diff(desired(nb(2, "gpu-01", tenant="beta"), nb(1, "gpu-01", tenant="acme")), [])
    assert [(c.key, c.netbox_id) for c in changes] == [("gpu-01", 1), ("gpu-01", 2)]


def test_notes_are_optional() -> None:
    assert diff(desired(nb(2, "gpu-01"), skipped={("device", 1)}), [item("i", "gpu-01", 1)]) == []


@pytest.mark.parametrize(
    ("change", "entry"),
    [
        (
            Change("create", "baremetal", "gpu-01", 1, {"status": (None, "available")}, {}),
            {
                "action": "create",
                "kind": "baremetal",
                "key": "gpu-01",
                "netboxId": 1,
                "fields": {"status": [None, "available"]},
            },
        ),
        (
            Change("flag", "vm", "vm-01", 3, {}, code=NETBOX_DELETED, item_id="v-1"),
            {
                "action": "flag",
                "kind": "vm",
                "key": "vm-01",
                "netboxId": 3,
                "fields": {},
                "code": NETBOX_DELETED,
            },
        ),
        (
            Change("retire", "switch", "leaf-1", None, {"status": ("available", "retired")}),
            {
                "action": "retire",
                "kind": "switch",
                "key": "leaf-1",
                "netboxId": None,
                "fields": {"status": ["available", "retired"]},
            },
        ),
    ],
)
def test_the_json_entry_of_a_change(change: Change, entry: dict[str, Any]) -> None:
    """DESIGN's `sync --diff --json` keys: the patch and the item id stay inside."""
    assert change.as_json() == entry


@pytest.mark.parametrize(
    ("document", "from_netbox", "netbox_id", "slot"),
    [
        ({"source": {"system": "netbox", "id": 4}, "tenant": "acme"}, True, 4, "acme"),
        ({"source": {"system": "manual", "id": 4}, "tenant": None}, False, None, None),
        ({"source": None}, False, None, None),
        ({}, False, None, None),
    ],
)
def test_an_item_is_netboxs_only_if_its_source_says_so(
    document: dict[str, Any], from_netbox: bool, netbox_id: int | None, slot: str | None
) -> None:
    held = Held("baremetal", "gpu-01", document)
    assert held.from_netbox is from_netbox
    assert held.netbox_id == netbox_id
    assert held.slot == ("baremetal", slot, "gpu-01")
    assert held.held is False and held.attention == ()
