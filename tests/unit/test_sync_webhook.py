"""Webhook payloads -> the devices to re-sync, and the signature check (pure parts)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sync import webhook
from sync.reconcile import SyncError
from sync.webhook import DEVICE, VM, BadEvent, Target, signature_ok, targets


def test_the_signature_is_hmac_sha512_of_the_body() -> None:
    body = b'{"event": "updated"}'
    good = hmac.new(b"s3cret", body, hashlib.sha512).hexdigest()
    assert signature_ok("s3cret", body, good)
    assert signature_ok("s3cret", body, good.upper())
    assert not signature_ok("s3cret", body + b" ", good)
    assert not signature_ok("other", body, good)
    assert not signature_ok("s3cret", body, None)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"object_type": "dcim.device", "data": {"id": 4}}, [Target(DEVICE, 4)]),
        ({"object_type": "virtualization.virtualmachine", "data": {"id": 4}}, [Target(VM, 4)]),
        (
            {"object_type": "dcim.module", "data": {"id": 9, "device": {"id": 4}}},
            [Target(DEVICE, 4)],
        ),
        ({"object_type": "dcim.interface", "data": {"device": {"id": 5}}}, [Target(DEVICE, 5)]),
        (
            {
                "object_type": "dcim.cable",
                "data": {
                    "a_terminations": [{"object": {"device": {"id": 7}}}],
                    "b_terminations": [{"object": {"device": {"id": 3}}}],
                },
            },
            [Target(DEVICE, 3), Target(DEVICE, 7)],
        ),
    ],
)
def test_a_change_to_a_part_re_syncs_its_device(payload: dict, expected: list[Target]) -> None:
    assert targets(payload) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "not a NetBox event"),
        ({"object_type": "dcim.site", "data": {"id": 1}}, "'dcim.site' is not one"),
        ({"object_type": "dcim.device", "data": {"id": "x"}}, "no object id"),
        ({"object_type": "dcim.module", "data": {"id": 1}}, "no object id"),
    ],
)
def test_a_payload_we_do_not_follow_is_refused_by_name(payload: object, message: str) -> None:
    with pytest.raises(BadEvent, match=message):
        targets(payload)


@pytest.mark.parametrize(
    ("refusals", "calls", "outcome"),
    [
        ([SyncError("raced", "CONCURRENT_UPDATE")], 2, "synced"),
        ([SyncError("raced", "CONCURRENT_UPDATE")] * 2, 2, "raced"),
        ([SyncError("bad", "BAD_INPUT")], 1, "bad"),
    ],
    ids=["a lost race is read and applied again", "once only", "no other refusal"],
)
def test_a_webhook_reads_again_once_when_the_inventory_changed_under_it(
    monkeypatch: pytest.MonkeyPatch, refusals: list[Exception], calls: int, outcome: str
) -> None:
    """NetBox posts an event once: a race lost between the diff and the apply would
    leave the change to the next full sync."""
    made: list[int] = []

    def sync_targets(*_args: object) -> list:
        made.append(1)
        if len(made) <= len(refusals):
            raise refusals[len(made) - 1]
        return []

    monkeypatch.setattr(webhook, "sync_targets", sync_targets)
    try:
        webhook.sync_targets_once_more_if_raced(None, None, None, [Target(DEVICE, 1)])  # type: ignore[arg-type]
        result = "synced"
    except SyncError as exc:
        result = str(exc)
    assert (len(made), result) == (calls, outcome)
