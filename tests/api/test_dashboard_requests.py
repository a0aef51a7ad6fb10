"""The dashboard's Requests and Allocations views (issue 17) in a real headless Chromium, as
tests/api/test_dashboard_quotas.py drives the Quotas view: requests made, queued and preempted
through the real server (the queue's rounds run by the test: request_queue.serve), then what
each token sees on the page. Screenshots are kept in test-artifacts/dashboard/."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from tests.support.api import Api, make_tenant, make_token
from tests.support.queue import gpu_ask, h100_server, serve_round

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
REQUEST = """mutation($i: ProvisionRequestInput!) { requestDevices(input: $i) {
  id state requestedBy queuePosition lastErrorCode } }"""
REJECT = "mutation($id: ID!) { rejectRequest(id: $id) { state } }"
MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"""
ALLOCATIONS = """{ allocations(filter: {active: true}) { edges { node {
  environment state preemptAt } } } }"""
# A reason is free text that its requester writes and an approver reads on this page.
HOSTILE_REASON = "<img src=x onerror=alert(1)>"
NO_PLACE = "\N{EN DASH}"  # the queue position of a request that is not in the queue


@pytest.fixture
def callers(api: Api, db: sessionmaker[Session]) -> dict[str, Api]:
    """Tenants acme (project llm) and other; the pool: two H100 servers of 8 GPUs, both held
    by other (o-1 preemptible, o-2 not), so that every request waits."""
    make_tenant(db, "acme", "llm")
    make_tenant(db, "other")
    devices = [h100_server(f"h100-{n}") for n in range(2)]
    api.ok(IMPORT, d=json.dumps({"devices": devices}))
    api.ok(MATCH, i=gpu_ask("o-1", tenant="other", preemptible=True))
    api.ok(MATCH, i=gpu_ask("o-2", tenant="other"))
    return {
        "platform": api,
        "acme": api.as_(make_token(db, "provisioner", "acme")),
        "acme-admin": api.as_(make_token(db, "partner-admin", "acme")),
        "acme-viewer": api.as_(make_token(db, "viewer", "acme")),
        "other-admin": api.as_(make_token(db, "partner-admin", "other")),
        "other-viewer": api.as_(make_token(db, "viewer", "other")),
    }


def _request(caller: Api, environment: str, reason: str = "", **extra: Any) -> dict[str, Any]:
    given = gpu_ask(environment, reason=reason or f"training run {environment}", **extra)
    asked: dict[str, Any] = caller.ok(REQUEST, i=given)["requestDevices"]
    return asked


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _refuse(dialog: Dialog, problems: list[str]) -> None:
    """Note a dialog and close it: with a listener, Playwright leaves a dialog open, and
    the page would hang on it instead of the test failing."""
    problems.append(f"a dialog: {dialog.message}")
    dialog.dismiss()


def _open(browser: Browser, url: str, token: str, problems: list[str]) -> Page:
    """A signed-in page; its script errors and any dialog (an alert run) go to ``problems``."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: _refuse(dialog, problems))
    page.goto(url + "/")
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#refreshed")).not_to_be_empty()  # rendered
    return page


def _cells(row: Locator) -> list[str]:
    return [text.strip() for text in row.locator("td").all_inner_texts()]


def test_pending_and_queued_requests_come_first_with_their_states(
    callers: dict[str, Api], browser: Browser
) -> None:
    rejected = _request(callers["acme"], "rejected-1")
    callers["acme-admin"].ok(REJECT, id=rejected["id"])
    pending = _request(callers["acme"], "pending-1", project="llm")
    queued = _request(callers["acme-admin"], "queued-1", priority=5)
    assert (pending["state"], queued["state"], queued["queuePosition"]) == (
        "PENDING_APPROVAL",
        "QUEUED",
        1,
    )
    problems: list[str] = []
    page = _open(browser, callers["platform"].url, callers["acme-viewer"].token or "", problems)

    expect(page.locator("#requests h2")).to_have_text("Requests")
    rows = page.locator("#table-requests tbody tr")
    expect(rows).to_have_count(3)
    assert [rows.nth(n).get_attribute("data-state") for n in range(3)] == [
        "PENDING_APPROVAL",
        "QUEUED",
        "REJECTED",
    ]
    expect(page.locator("#requests-summary")).to_have_text("1 pending approval · 1 queued")
    # state, tenant / project, environment, reason, priority, GPUs, requested by, age,
    # queue position, last error (age is checked apart: it is a duration)
    first = _cells(rows.nth(0))
    assert first[:7] == [
        "Pending approval",
        "acme / llm",
        "pending-1",
        "training run pending-1",
        "0",
        "8",
        pending["requestedBy"],
    ]
    assert first[7].endswith((" s", " min")) and first[8:] == [NO_PLACE, ""]
    second = _cells(rows.nth(1))
    assert second[:7] == [
        "Queued",
        "acme",
        "queued-1",
        "training run queued-1",
        "5",
        "8",
        queued["requestedBy"],
    ]
    assert second[8] == "1"
    assert second[9].startswith("NO_MATCH")
    assert _cells(rows.nth(2))[0] == "Rejected"
    headers = page.locator("#table-requests thead th[scope=col]").all_inner_texts()
    assert headers[:3] == ["State", "Tenant / project", "Environment"]
    _screenshot(page, "8-requests")
    assert problems == []
    page.close()


def test_a_tenant_token_sees_only_its_own_requests(
    callers: dict[str, Api], browser: Browser
) -> None:
    _request(callers["acme"], "acme-run")
    _request(callers["other-admin"], "other-secret-run")
    problems: list[str] = []
    for who, mine, theirs in (
        ("acme-viewer", "acme-run", "other-secret-run"),
        ("other-viewer", "other-secret-run", "acme-run"),
    ):
        page = _open(browser, callers["platform"].url, callers[who].token or "", problems)
        table = page.locator("#table-requests")
        expect(table.locator("tbody tr")).to_have_count(1)
        expect(table.locator("tbody tr td.environment")).to_have_text(mine)
        expect(page.locator("#dashboard")).not_to_contain_text(theirs)
        page.close()
    # The platform sees both.
    page = _open(browser, callers["platform"].url, callers["platform"].token or "", problems)
    expect(page.locator("#table-requests tbody tr")).to_have_count(2)
    page.close()
    assert problems == []


def test_a_preempting_allocation_is_marked_with_the_time_it_is_released(
    callers: dict[str, Api], db: sessionmaker[Session], browser: Browser
) -> None:
    urgent = _request(callers["acme-admin"], "urgent", priority=10)
    assert urgent["state"] == "QUEUED"
    assert len(serve_round(db).preempting) == 1
    held = {
        e["node"]["environment"]: e["node"]
        for e in callers["other-viewer"].ok(ALLOCATIONS)["allocations"]["edges"]
    }
    assert held["o-1"]["state"] == "PREEMPTING"
    preempt_at = held["o-1"]["preemptAt"]

    problems: list[str] = []
    page = _open(browser, callers["platform"].url, callers["other-viewer"].token or "", problems)
    rows = page.locator("#table-allocations tbody tr")
    expect(rows).to_have_count(2)
    victim = rows.nth(0)  # being preempted: first
    expect(victim).to_have_attribute("data-environment", "o-1")
    expect(victim).to_have_attribute("data-state", "PREEMPTING")
    expect(victim.locator(".state")).to_have_text("Preempting")
    released_at = victim.locator("div.preempting time")
    expect(released_at).to_have_attribute("datetime", preempt_at)
    shown = page.evaluate("(iso) => new Date(iso).toLocaleString()", preempt_at)
    expect(released_at).to_contain_text(shown)
    expect(rows.nth(1).locator(".state")).to_have_text("Active")
    notice = page.locator("#preempting-notice")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("1 allocation is being preempted")
    expect(notice.locator("time")).to_have_attribute("datetime", preempt_at)
    _screenshot(page, "9-preempting")

    # After the grace the victim is gone from its owner's page, and the notice with it.
    assert serve_round(db, timedelta(seconds=301)).preempted
    page.click("#refresh")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_have_attribute("data-environment", "o-2")
    expect(notice).to_be_hidden()
    page.close()

    # The requester sees its request fulfilled, and the allocation it now holds.
    page = _open(browser, callers["platform"].url, callers["acme-viewer"].token or "", problems)
    expect(page.locator("#table-requests tbody tr")).to_have_attribute("data-state", "FULFILLED")
    expect(page.locator("#table-allocations tbody tr td.environment")).to_have_text("urgent")
    page.close()
    assert problems == []


def test_a_reason_written_as_markup_is_shown_as_text(
    callers: dict[str, Api], browser: Browser
) -> None:
    _request(callers["acme"], "hostile", reason=HOSTILE_REASON)
    problems: list[str] = []
    page = _open(browser, callers["platform"].url, callers["platform"].token or "", problems)
    reason = page.locator("#table-requests tbody tr td.reason")
    expect(reason).to_have_text(HOSTILE_REASON)
    expect(reason).to_have_attribute("title", HOSTILE_REASON)
    expect(page.locator("#dashboard img")).to_have_count(0)
    page.close()
    assert problems == []  # no alert ran
