"""The fleet dashboard at / in a real headless Chromium (Debian's, driven by Playwright with
its path given: no browser download). Screenshots are kept in test-artifacts/dashboard/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from tests.api.test_allocation import fleet, labels, server
from tests.conftest import IN_CI, Api, make_tenant, make_token

CHROMIUM = os.environ.get("GPUINV_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id } } }"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        message = f"Chromium is required for the dashboard tests and not found at {CHROMIUM}"
        if IN_CI:
            pytest.fail(message + " (.ci/run installs Debian's chromium)", pytrace=False)
        pytest.skip(message + ": apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _fleet(api: Api, db: sessionmaker[Session]) -> None:
    make_tenant(db, "acme")
    fleet(
        api,
        *(server(f"mum-{i}", site="mumbai", tenant="acme") for i in range(3)),
        *(server(f"pun-{i}", site="pune", vendor="AMD") for i in range(2)),
    )
    request = {"labels": labels(), "variables": {"gputype": "NVIDIA", "gpu": "8"}}
    api.ok(MATCH, input={"environment": "train-1", "tenant": "acme", **request})
    api.ok(MATCH, input={"environment": "train-2", "tenant": "acme", **request})


def test_the_dashboard_asks_for_a_token_once_and_shows_the_fleet(
    api: Api, db: sessionmaker[Session], browser: Browser
) -> None:
    _fleet(api, db)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(api.url + "/")

    expect(page.locator("#signin")).to_be_visible()
    _screenshot(page, "1-sign-in")
    page.fill("#token", "gpuinv_not-a-token")
    page.click("#signin button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("token")
    expect(page.locator("#dashboard")).to_be_hidden()

    page.fill("#token", api.token or "")
    page.click("#signin button[type=submit]")
    expect(page.locator("#dashboard")).to_be_visible()
    # 16 of 40 GPUs allocated; 5 nodes; 3 whole nodes free
    expect(page.locator("#kpi-utilization")).to_have_text("40.0%")
    expect(page.locator("#kpi-gpus")).to_have_text("16 of 40 GPUs allocated")
    expect(page.locator("#kpi-nodes")).to_have_text("5")
    expect(page.locator("#kpi-whole")).to_have_text("3")
    expect(page.locator("#kpi-allocations")).to_have_text("2")
    expect(page.locator("#kpi-sync")).to_have_text("never")
    sites = page.locator("#table-sites tbody tr")
    expect(sites).to_have_count(2)
    expect(sites.nth(0)).to_contain_text("mumbai")
    expect(sites.nth(0).locator("td").nth(3)).to_have_text("16")
    expect(page.locator("#table-tenants tbody tr").first).to_contain_text("acme")
    expect(page.locator("#chart-sites rect.allocated")).to_have_count(2)
    expect(page.locator("#chart-models text").first).to_contain_text("AMD H100")
    expect(page.locator("#table-audit tbody tr").first).to_contain_text("allocate")
    _screenshot(page, "2-fleet")

    page.reload()  # the token is kept for the tab: no second sign-in
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#signin")).to_be_hidden()

    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin-error")).to_have_text("Signed out.")
    assert problems == []
    context.close()


def test_a_tenant_token_sees_its_own_fleet_only(
    api: Api, db: sessionmaker[Session], browser: Browser
) -> None:
    _fleet(api, db)
    page = browser.new_page()
    page.goto(api.url + "/")
    page.fill("#token", make_token(db, "viewer", "acme"))
    page.click("#signin button[type=submit]")
    expect(page.locator("#who")).to_contain_text("acme")
    expect(page.locator("#kpi-nodes-sub")).to_have_text("of 3 nodes")
    expect(page.locator("#table-sites tbody tr")).to_have_count(1)
    _screenshot(page, "3-tenant")
    page.close()
