"""api/domain/health.py on plain data: a condition checked against its server, and a
server's conditions after a report or a clear. Reports and clears through the API, and what
they do to matching and capacity, are in tests/api/test_health.py."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from api.domain.errors import BAD_INPUT, DomainError
from api.domain.health import MAX_MESSAGE, Condition, HealthCode, cleared, condition, reported

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2026, 1, 2, 4, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "stored"),
    [
        (HealthCode.XID, "xid"),
        (HealthCode.ECC, "ecc"),
        (HealthCode.THERMAL, "thermal"),
        (HealthCode.GPU_LOST, "gpu-lost"),
        (HealthCode.LINK_DOWN, "link-down"),
        (HealthCode.LINK_DEGRADED, "link-degraded"),
        (HealthCode.OTHER, "other"),
    ],
)
def test_codes_are_stored_as_spelt(code: HealthCode, stored: str) -> None:
    assert code.value == stored and HealthCode(stored) is code


def check(
    gpu_index: int | None = None,
    total_gpus: int = 8,
    message: str | None = "Xid 79",
    port: str | None = None,
) -> Condition:
    return condition(HealthCode.XID, message, gpu_index, port, total_gpus, T0, "agent-1")


@pytest.mark.parametrize(
    ("gpu_index", "total_gpus"),
    [(None, 8), (None, 0), (0, 8), (7, 8), (0, 1)],
)
def test_a_gpu_index_of_one_of_the_servers_gpus_or_none_is_taken(
    gpu_index: int | None, total_gpus: int
) -> None:
    assert check(gpu_index, total_gpus).gpu_index == gpu_index


@pytest.mark.parametrize(
    ("gpu_index", "total_gpus", "message"),
    [
        (8, 8, "gpuIndex: the server has 8 GPU(s) (0..7), got 8"),
        (9, 8, "gpuIndex: the server has 8 GPU(s) (0..7), got 9"),
        (-1, 8, "gpuIndex: the server has 8 GPU(s) (0..7), got -1"),
        (1, 1, "gpuIndex: the server has 1 GPU(s) (0..0), got 1"),
        (0, 0, "gpuIndex: the server has no GPUs, got 0"),
        (3, 0, "gpuIndex: the server has no GPUs, got 3"),
    ],
)
def test_a_gpu_index_the_server_does_not_have_is_bad_input_naming_it(
    gpu_index: int, total_gpus: int, message: str
) -> None:
    with pytest.raises(DomainError) as refused:
        check(gpu_index, total_gpus)
    assert (refused.value.code, refused.value.message) == (BAD_INPUT, message)
    assert refused.value.extensions == {"field": "gpuIndex"}


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        (None, None),
        ("", None),  # an empty message is no message
        ("Xid 79: GPU has fallen off the bus", "Xid 79: GPU has fallen off the bus"),
        ("x" * MAX_MESSAGE, "x" * MAX_MESSAGE),
        ("é" * MAX_MESSAGE, "é" * MAX_MESSAGE),  # counted in characters, not bytes
    ],
)
def test_a_message_of_up_to_500_characters_is_kept(message: str | None, kept: str | None) -> None:
    assert check(message=message).message == kept


@pytest.mark.parametrize("length", [MAX_MESSAGE + 1, 10_000])
def test_a_longer_message_is_bad_input_naming_it(length: int) -> None:
    with pytest.raises(DomainError) as refused:
        check(message="x" * length)
    assert refused.value.code == BAD_INPUT
    assert refused.value.message == f"message: at most 500 characters, got {length}"
    assert refused.value.extensions == {"field": "message"}


def test_a_checked_condition_keeps_what_was_reported() -> None:
    got = condition(HealthCode.LINK_DOWN, "no carrier", None, "ib0", 8, T0, "agent-1")
    assert got == Condition(HealthCode.LINK_DOWN, "no carrier", None, "ib0", T0, "agent-1")


@pytest.mark.parametrize(
    ("got", "key"),
    [
        (Condition(HealthCode.XID, "a", 3, None, T0, "x"), ("xid", 3, None)),
        (Condition(HealthCode.LINK_DOWN, None, None, "ib0", T0, "x"), ("link-down", None, "ib0")),
        (Condition(HealthCode.THERMAL, "hot", None, None, T1, "y"), ("thermal", None, None)),
    ],
)
def test_a_condition_is_one_per_code_and_place(got: Condition, key: tuple[Any, ...]) -> None:
    assert got.key == key


def test_a_condition_is_stored_as_json() -> None:
    got = Condition(HealthCode.GPU_LOST, "fell off", 2, None, T0, "agent-1")
    assert got.stored() == {
        "code": "gpu-lost",
        "message": "fell off",
        "gpuIndex": 2,
        "port": None,
        "since": "2026-01-02T03:04:05+00:00",
        "reportedBy": "agent-1",
    }


def entry(code: str, gpu: int | None = None, port: str | None = None, **more: Any) -> dict:
    stored = {"code": code, "message": None, "gpuIndex": gpu, "port": port}
    return stored | {"since": "earlier", "reportedBy": "agent-0"} | more


def new(code: HealthCode, gpu: int | None = None, port: str | None = None) -> Condition:
    return Condition(code, "now", gpu, port, T1, "agent-1")


NOW = {"message": "now", "since": T1.isoformat(), "reportedBy": "agent-1"}


@pytest.mark.parametrize(
    ("current", "report", "after"),
    [
        pytest.param(None, new(HealthCode.ECC), [entry("ecc", **NOW)], id="the first"),
        pytest.param([], new(HealthCode.ECC, 1), [entry("ecc", 1, **NOW)], id="none yet"),
        pytest.param(
            [entry("ecc")],
            new(HealthCode.ECC),
            [entry("ecc", **NOW) | {"since": "earlier"}],
            id="a repeat refreshes it, keeping when it started",
        ),
        pytest.param(
            [entry("xid", 0), entry("thermal"), entry("xid", 1)],
            new(HealthCode.XID, 0),
            [entry("thermal"), entry("xid", 1), entry("xid", 0, **NOW) | {"since": "earlier"}],
            id="a repeat comes last",
        ),
        pytest.param(
            [entry("xid", 0)],
            new(HealthCode.XID, 1),
            [entry("xid", 0), entry("xid", 1, **NOW)],
            id="the same code on another GPU is another condition",
        ),
        pytest.param(
            [entry("link-down", port="ib0")],
            new(HealthCode.LINK_DOWN, port="ib1"),
            [entry("link-down", port="ib0"), entry("link-down", port="ib1", **NOW)],
            id="the same code on another port is another condition",
        ),
        pytest.param(
            [entry("xid", 0)],
            new(HealthCode.XID),
            [entry("xid", 0), entry("xid", **NOW)],
            id="the same code on the server is another condition",
        ),
        pytest.param(
            [{"code": "ecc", "since": "earlier", "message": "old"}],
            new(HealthCode.ECC),
            [entry("ecc", **NOW) | {"since": "earlier"}],
            id="an entry stored without its place is of the server",
        ),
    ],
)
def test_a_report_adds_a_condition_or_refreshes_it(
    current: list[dict] | None, report: Condition, after: list[dict]
) -> None:
    before = copy.deepcopy(current)
    assert reported(current, report) == after
    assert current == before  # the stored list is not changed in place


XID0, XID1 = entry("xid", 0), entry("xid", 1)
ECC, LINK0, LINK1 = entry("ecc"), entry("link-down", port="ib0"), entry("link-degraded", port="ib1")
ALL = [XID0, ECC, LINK0, XID1, LINK1]


@pytest.mark.parametrize(
    ("current", "code", "port", "left"),
    [
        pytest.param(ALL, None, None, None, id="everything"),
        pytest.param(ALL, HealthCode.XID, None, [ECC, LINK0, LINK1], id="a code on every GPU"),
        pytest.param(ALL, HealthCode.ECC, None, [XID0, LINK0, XID1, LINK1], id="a code"),
        pytest.param(ALL, None, "ib0", [XID0, ECC, XID1, LINK1], id="every code of a port"),
        pytest.param(ALL, HealthCode.LINK_DOWN, "ib1", ALL, id="a code the port does not have"),
        pytest.param(
            ALL, HealthCode.LINK_DEGRADED, "ib1", [XID0, ECC, LINK0, XID1], id="a code of a port"
        ),
        pytest.param(ALL, HealthCode.THERMAL, None, ALL, id="a code not reported"),
        pytest.param(ALL, None, "ib9", ALL, id="a port without conditions"),
        pytest.param([ECC], HealthCode.ECC, None, None, id="the last one: none left"),
        pytest.param([{"code": "ecc"}], None, "ib0", [{"code": "ecc"}], id="no place stored"),
        pytest.param(None, None, None, None, id="nothing to clear"),
        pytest.param([], HealthCode.XID, None, None, id="an empty list"),
    ],
)
def test_clearing_leaves_the_others_or_none(
    current: list[dict] | None, code: HealthCode | None, port: str | None, left: list | None
) -> None:
    before = copy.deepcopy(current)
    assert cleared(current, code, port) == left
    assert current == before
