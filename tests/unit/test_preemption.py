"""Preemption, pure (api/domain/preemption.py): who may be evicted, in which order, and
which victims' eviction lets a queued request fit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.domain.matching.engine import match
from api.domain.matching.index import Candidate, CandidateIndex, Capacity
from api.domain.matching.profile import parse_labels
from api.domain.matching.request import Request, resolve
from api.domain.preemption import Held, Victim, choose_victims, freed, may_evict, victim_order
from api.domain.quota import NONE_KEY, Limit, QuotaStep
from api.domain.vocabulary import Kind, Status
from tests.support.seed import SEED_CONFIG

pytestmark = pytest.mark.unit

EIGHT = Capacity(cpu=224, memory_mb=2097152, storage_gb=30720, gpus=8)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def device(
    hostname: str, *, status: str = "available", free: Capacity | None = None, site: str = "s1"
) -> Candidate:
    """An 8-GPU H100 server; ``status='allocated'`` with nothing free is one held whole."""
    held_whole = status == "allocated"
    document = {
        "hostname": hostname,
        "kind": "baremetal",
        "status": status,
        "totalgpus": 8,
        "gpus": [{"index": i, "vendorCode": "NVIDIA", "modelNo": "H100"} for i in range(8)],
        "site": site,
    }
    free = Capacity() if held_whole and free is None else free or EIGHT
    return Candidate(
        hostname, Kind.BAREMETAL, hostname, Status(status), document, EIGHT, free, site
    )


def slice_of(gpus: int) -> Capacity:
    return Capacity(cpu=8 * gpus, memory_mb=65536 * gpus, storage_gb=100 * gpus, gpus=gpus)


def free_after(*slices: Capacity) -> Capacity:
    return Capacity(
        *(
            getattr(EIGHT, name) - sum(getattr(s, name) for s in slices)
            for name in ("cpu", "memory_mb", "storage_gb", "gpus")
        )
    )


def whole(device_id: str) -> Held:
    return Held(device_id, True, EIGHT)


def victim(
    allocation_id: str,
    *holds: Held,
    priority: int = 0,
    borrowed: bool = False,
    age_hours: int = 0,
) -> Victim:
    """``age_hours``: how long ago it was created (larger is older)."""
    return Victim(allocation_id, priority, borrowed, T0 - timedelta(hours=age_hours), holds)


def request(inventory_type: str = "baremetal", **variables: int) -> Request:
    labels = {
        "paas.envmgmt.io/inventory": inventory_type,
        "paas.envmgmt.io/inventory.config": SEED_CONFIG,
    }
    return resolve(parse_labels(labels), variables or {"gpu": 8})


def chosen_ids(plan_victims: tuple[Victim, ...]) -> list[str]:
    return [v.allocation_id for v in plan_victims]


# -- who may be evicted ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("victim_priority", "borrowed", "within_quota", "allowed"),
    [
        (0, False, False, True),  # lower priority: always
        (0, False, True, True),
        (0, True, False, True),
        (0, True, True, True),
        (5, False, False, False),  # equal priority: never ...
        (5, False, True, False),
        (5, True, False, False),
        (5, True, True, True),  # ... unless reclaiming borrowed capacity within quota
        (9, False, False, False),  # higher priority: the same
        (9, False, True, False),
        (9, True, False, False),
        (9, True, True, True),
    ],
)
def test_who_may_evict_whom(
    victim_priority: int, borrowed: bool, within_quota: bool, allowed: bool
) -> None:
    held = victim("v", whole("a"), priority=victim_priority, borrowed=borrowed)
    assert may_evict(held, 5, within_quota) is allowed


@pytest.mark.parametrize(
    ("victims", "expected"),
    [
        # borrowed first, even at a higher priority than a non-borrowed one
        ([victim("low", priority=0), victim("lent", priority=9, borrowed=True)], ["lent", "low"]),
        # then lowest priority
        ([victim("p3", priority=3), victim("p1", priority=1), victim("p2", priority=2)],
         ["p1", "p2", "p3"]),
        # then newest
        ([victim("old", age_hours=5), victim("new", age_hours=1), victim("mid", age_hours=3)],
         ["new", "mid", "old"]),
        # then the allocation id, so equals come out the same way every time
        ([victim("b"), victim("c"), victim("a")], ["a", "b", "c"]),
        # all at once: borrowed by priority and age, then the rest
        (
            [
                victim("x", priority=1),
                victim("y", priority=1, borrowed=True, age_hours=9),
                victim("z", priority=1, borrowed=True, age_hours=1),
                victim("w", priority=0),
            ],
            ["z", "y", "w", "x"],
        ),
    ],
)  # fmt: skip
def test_victims_are_ordered_borrowed_then_lowest_priority_then_newest(
    victims: list[Victim], expected: list[str]
) -> None:
    assert [v.allocation_id for v in victim_order(victims)] == expected
    assert [v.allocation_id for v in victim_order(reversed(victims))] == expected


# -- choosing victims -----------------------------------------------------------------


def test_nothing_preemptible_gives_none() -> None:
    index = CandidateIndex([device("a", status="allocated"), device("b", status="allocated")])
    assert choose_victims(request(), index, []) is None


def test_a_request_too_big_even_with_every_victim_freed_gives_none() -> None:
    index = CandidateIndex([device("a", status="allocated"), device("b", status="allocated")])
    victims = [victim("va", whole("a")), victim("vb", whole("b"))]
    assert choose_victims(request(gpu=16), index, victims) is None
    assert choose_victims(request(noofNodes=3), index, victims) is None


def test_a_request_that_fits_already_evicts_nobody() -> None:
    index = CandidateIndex([device("a", status="allocated"), device("b")])
    plan = choose_victims(request(), index, [victim("va", whole("a"))])
    assert plan is not None and plan.victims == ()
    assert [c.id for c in plan.outcome.chosen] == ["b"]


@pytest.mark.parametrize(
    ("victims", "expected"),
    [
        # borrowed before a non-borrowed one of lower priority
        ([victim("low", whole("a"), priority=0), victim("lent", whole("b"), priority=4,
                                                        borrowed=True)], "lent"),
        # among non-borrowed, the lowest priority
        ([victim("p2", whole("a"), priority=2), victim("p1", whole("b"), priority=1),
          victim("p3", whole("c"), priority=3)], "p1"),
        # among equals, the newest
        ([victim("old", whole("a"), age_hours=9), victim("new", whole("b"), age_hours=1),
          victim("mid", whole("c"), age_hours=4)], "new"),
    ],
)  # fmt: skip
def test_one_node_is_taken_from_the_first_victim_in_order(
    victims: list[Victim], expected: str
) -> None:
    index = CandidateIndex([device(h, status="allocated") for h in ("a", "b", "c")])
    plan = choose_victims(request(), index, victims)
    assert plan is not None
    assert chosen_ids(plan.victims) == [expected]
    (held,) = next(v for v in victims if v.allocation_id == expected).holds
    assert [c.id for c in plan.outcome.chosen] == [held.device_id]


def test_victims_not_needed_are_pruned() -> None:
    # Host h holds two borrowed 2-GPU slices and a third slice nobody may evict: freeing
    # the two (first in order) leaves h still not whole. Only big's device b gives a node,
    # and once it is freed the two slices are not needed.
    kept = slice_of(2)
    index = CandidateIndex(
        [
            device("h", free=free_after(slice_of(2), slice_of(2), kept)),
            device("b", status="allocated"),
        ]
    )
    small = [
        victim(f"small{i}", Held("h", False, slice_of(2)), borrowed=True, priority=0)
        for i in (1, 2)
    ]
    big = victim("big", whole("b"), priority=3)
    plan = choose_victims(request(), index, [*small, big])
    assert plan is not None
    assert chosen_ids(plan.victims) == ["big"]
    assert [c.id for c in plan.outcome.chosen] == ["b"]


def test_pruning_keeps_the_victims_a_multi_node_request_needs() -> None:
    # mks, 2 nodes: lent (first in order) frees a; cheap frees b and c together, which
    # alone suffice, so lent is dropped. A third victim after them is never looked at.
    index = CandidateIndex([device(h, status="allocated") for h in ("a", "b", "c", "d")])
    victims = [
        victim("lent", whole("a"), borrowed=True, priority=7),
        victim("cheap", whole("b"), whole("c"), priority=0),
        victim("later", whole("d"), priority=1),
    ]
    plan = choose_victims(request("mks", noofNodes=2), index, victims)
    assert plan is not None
    assert chosen_ids(plan.victims) == ["cheap"]
    assert sorted(c.id for c in plan.outcome.chosen) == ["b", "c"]


def test_two_slices_freed_together_give_a_whole_node() -> None:
    index = CandidateIndex([device("h", free=free_after(slice_of(4), slice_of(4)))])
    first = victim("first", Held("h", False, slice_of(4)), age_hours=1)
    second = victim("second", Held("h", False, slice_of(4)), age_hours=2)
    whole_node = request()
    assert not match(whole_node, freed(index, None, [first])).matched
    assert not match(whole_node, freed(index, None, [second])).matched
    assert match(whole_node, freed(index, None, [first, second])).matched
    assert choose_victims(whole_node, index, [first]) is None
    plan = choose_victims(whole_node, index, [second, first])
    assert plan is not None
    assert chosen_ids(plan.victims) == ["first", "second"]  # newest first
    assert [c.free for c in plan.outcome.chosen] == [EIGHT]


def test_a_slice_request_takes_what_one_slice_victim_gives_back() -> None:
    index = CandidateIndex([device("h", free=free_after(slice_of(6), slice_of(2)))])
    six = victim("six", Held("h", False, slice_of(6)))
    plan = choose_victims(request("vcluster", gpu=4), index, [six])
    assert plan is not None and chosen_ids(plan.victims) == ["six"]
    assert plan.outcome.chosen[0].free == free_after(slice_of(2))


def test_freed_gives_back_no_more_than_the_hardware_has() -> None:
    index = CandidateIndex([device("h", free=free_after(slice_of(2)))])
    overstated = victim("v", Held("h", False, slice_of(4)))
    assert freed(index, None, [overstated]).items["h"].free == EIGHT


def test_freed_never_mutates_the_original_index() -> None:
    original = device("a", status="allocated")
    index = CandidateIndex([original])
    what_if = freed(index, None, [victim("va", whole("a"))])
    assert what_if.items["a"].status == Status.AVAILABLE
    assert what_if.items["a"].document["status"] == "available"
    assert match(request(), what_if).matched
    assert not match(request(), index).matched
    assert index.items["a"] is original and original.document["status"] == "allocated"


def test_a_device_in_maintenance_stays_there_when_its_holder_is_freed() -> None:
    # An operator may put a held device into maintenance; release keeps it there.
    index = CandidateIndex([device("a", status="maintenance", free=Capacity())])
    what_if = freed(index, None, [victim("va", whole("a"))])
    assert what_if.items["a"].status == Status.MAINTENANCE
    assert choose_victims(request(), index, [victim("va", whole("a"))]) is None


def test_victims_outside_the_callers_inventory_are_never_chosen() -> None:
    index = CandidateIndex(
        [device("theirs", status="allocated"), device("ours", status="allocated")]
    )
    # lent comes first in order, but holds a device the caller may not have
    lent = victim("lent", whole("theirs"), borrowed=True)
    own = victim("own", whole("ours"), priority=3)
    plan = choose_victims(request(), index, [lent, own], within=index.having(["ours"]))
    assert plan is not None and chosen_ids(plan.victims) == ["own"]
    assert [c.id for c in plan.outcome.chosen] == ["ours"]
    assert choose_victims(request(), index, [lent], within=index.having(["ours"])) is None
    assert freed(index, index.having(["ours"]), [lent, own]).items.keys() == {"ours"}


def test_the_quota_still_applies_after_eviction() -> None:
    index = CandidateIndex([device("a", status="allocated")])
    victims = [victim("va", whole("a"))]
    no_nodes = QuotaStep((Limit("acme", None, NONE_KEY, NONE_KEY, None, None, 0),))
    assert choose_victims(request(), index, victims, quota=no_nodes) is None
    room = QuotaStep((Limit("acme", None, NONE_KEY, NONE_KEY, None, 8, 1),))
    plan = choose_victims(request(), index, victims, quota=room)
    assert plan is not None and chosen_ids(plan.victims) == ["va"]
