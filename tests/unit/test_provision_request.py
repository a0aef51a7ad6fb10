"""The pure rules of provision requests (api/domain/provision_request.py): the moves the
state machine has and refuses, approval policies, the queue's order and fair share, and
the backfill window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.domain.errors import DomainError
from api.domain.provision_request import (
    ApprovalPolicy,
    QueueEntry,
    RequestState,
    approved_at_once,
    check_move,
    holds_queue,
    queue_order,
    share,
)

S = RequestState
T0 = datetime(2026, 12, 1, tzinfo=UTC)

# Every move DESIGN.md names, and nothing else: a request ends where it ends.
ALLOWED = {
    (S.PENDING_APPROVAL, S.APPROVED),
    (S.PENDING_APPROVAL, S.REJECTED),
    (S.PENDING_APPROVAL, S.CANCELLED),
    (S.PENDING_APPROVAL, S.EXPIRED),
    (S.APPROVED, S.QUEUED),
    (S.APPROVED, S.FULFILLED),
    (S.APPROVED, S.CANCELLED),
    (S.QUEUED, S.FULFILLED),
    (S.QUEUED, S.CANCELLED),
}


@pytest.mark.parametrize("seen", list(S))
@pytest.mark.parametrize("to", list(S))
def test_the_state_machine_has_exactly_the_designed_moves(seen: S, to: S) -> None:
    if (seen, to) in ALLOWED:
        check_move("r1", seen, to)
        return
    with pytest.raises(DomainError) as refused:
        check_move("r1", seen, to)
    assert refused.value.code == "BAD_INPUT"
    assert seen.value in refused.value.message and to.value in refused.value.message


def test_cancelling_a_fulfilled_request_says_to_release_instead() -> None:
    with pytest.raises(DomainError, match="release that instead"):
        check_move("r1", S.FULFILLED, S.CANCELLED)


@pytest.mark.parametrize(
    ("policy", "gpus", "project", "decides", "at_once"),
    [
        (None, 1, None, False, False),  # no policy: a person decides
        (None, 64, None, True, True),  # unless the requester is one who decides
        (ApprovalPolicy(), 1, None, False, False),  # an empty policy approves nothing
        (ApprovalPolicy(max_gpus=4), 4, None, False, True),
        (ApprovalPolicy(max_gpus=4), 5, None, False, False),
        (ApprovalPolicy(max_gpus=0), 0, None, False, True),  # a request for CPU only
        (ApprovalPolicy(projects=frozenset({"p1"})), 64, "p1", False, True),
        (ApprovalPolicy(projects=frozenset({"p1"})), 64, "p2", False, False),
        (ApprovalPolicy(projects=frozenset({"p1"})), 1, None, False, False),
    ],
)
def test_approval_policies(
    policy: ApprovalPolicy | None, gpus: int, project: str | None, decides: bool, at_once: bool
) -> None:
    assert approved_at_once(policy, gpus, project, decides) is at_once


@pytest.mark.parametrize(
    ("used", "limit", "fleet", "expected"),
    [
        (8, 16, 64, 0.5),
        (0, 16, 64, 0.0),
        (8, None, 64, 0.125),  # no limit: as if its quota were the whole fleet
        (20, 16, 64, 1.25),  # above its limit (borrowed, or a lowered limit)
        (0, 0, 64, 0.0),
        (1, 0, 64, float("inf")),  # holds something against a zero limit: last
    ],
)
def test_share(used: int, limit: int | None, fleet: int, expected: float) -> None:
    assert share(used, limit, fleet) == expected


def _entry(id: str, priority: int = 0, share: float = 0.0, minutes: int = 0) -> QueueEntry:
    return QueueEntry(id, priority, share, T0 + timedelta(minutes=minutes))


def test_queue_order_priority_then_share_then_age_then_id() -> None:
    entries = [
        _entry("old-low", priority=0, minutes=0),
        _entry("new-high", priority=5, minutes=9),
        _entry("big-share", priority=1, share=0.9, minutes=1),
        _entry("small-share", priority=1, share=0.1, minutes=8),
        _entry("b-tie", priority=1, share=0.1, minutes=8),
        _entry("older-same-share", priority=1, share=0.1, minutes=2),
    ]
    assert [e.id for e in queue_order(entries)] == [
        "new-high",
        "older-same-share",
        "b-tie",
        "small-share",
        "big-share",
        "old-low",
    ]


@pytest.mark.parametrize(
    ("waited", "holds"),
    [
        (timedelta(0), False),
        (timedelta(minutes=9, seconds=59), False),
        (timedelta(minutes=10), True),
    ],
)
def test_a_blocked_request_holds_the_queue_once_it_has_waited_the_window(
    waited: timedelta, holds: bool
) -> None:
    assert holds_queue(T0, T0 + waited, timedelta(minutes=10)) is holds
