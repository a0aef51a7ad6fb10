"""The dashboard's Quotas view (issue 16) in a real headless Chromium, as
tests/api/test_dashboard.py drives the rest of the dashboard: quotas set and a claim made
through the API, then each tenant's and project's usage against its limits on the page.
Screenshots are kept in test-artifacts/dashboard/."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from tests.support.api import Api, make_tenant, make_token
from tests.support.fleet import fleet, labels, server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
SET = "mutation($i: QuotaInput!) { setQuota(input: $i) { tenant } }"
MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id } } }"""
# A GPU model is free text: the page must show it as text, never run it.
HOSTILE_MODEL = '<img src=x onerror="window.owned=1">'


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _quotas_and_a_claim(api: Api, db: sessionmaker[Session]) -> None:
    """acme: 16 GPUs and 2 nodes; its project llm: 8 H100 GPUs; globex: 8 GPUs of a model
    named like markup. acme's provisioner holds one server of 8 H100 in llm."""
    make_tenant(db, "acme", "llm")
    make_tenant(db, "globex")
    fleet(api, *(server(f"gpu-{n}") for n in range(3)))
    api.ok(SET, i={"tenant": "acme", "gpus": 16, "nodes": 2})
    api.ok(SET, i={"tenant": "acme", "project": "llm", "gpuModel": "H100", "gpus": 8})
    api.ok(SET, i={"tenant": "globex", "gpuModel": HOSTILE_MODEL, "gpus": 8})
    request = {"labels": labels(), "variables": {"gputype": "NVIDIA", "gpu": "8"}}
    acme = api.as_(make_token(db, "provisioner", "acme"))
    acme.ok(MATCH, input={"environment": "train-1", "project": "llm", **request})


def _sign_in(page: Page, url: str, token: str) -> None:
    page.goto(url + "/")
    page.fill("#token", token)
    page.click("#signin button[type=submit]")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#refreshed")).not_to_be_empty()  # rendered


def _cells(page: Page, tenant: str, project: str = "", model: str = "") -> list[str]:
    keys = {"tenant": tenant, "project": project, "model": model}
    # json.dumps quotes a value as a CSS string does, escaping its quotes and backslashes
    row = page.locator(
        "#table-quotas tbody tr"
        + "".join(f"[data-{name}={json.dumps(value)}]" for name, value in keys.items())
    )
    expect(row).to_have_count(1)
    return [text.strip() for text in row.locator("td").all_inner_texts()]


def test_the_quotas_view_shows_usage_against_each_limit(
    api: Api, db: sessionmaker[Session], browser: Browser
) -> None:
    _quotas_and_a_claim(api, db)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    # Noted and closed: a dialog a listener leaves open would hang the test, not fail it.
    page.on(
        "dialog", lambda dialog: (problems.append(f"a dialog: {dialog.message}"), dialog.dismiss())
    )
    _sign_in(page, api.url, api.token or "")

    expect(page.locator("#quotas h2")).to_have_text("Quotas")
    expect(page.locator("#quotas-empty")).to_be_hidden()
    expect(page.locator("#table-quotas tbody tr")).to_have_count(3)
    # tenant, GPU model, GPUs, nodes, borrowed GPUs
    assert _cells(page, "acme") == ["acme", "every model", "8 of 16", "1 of 2", "0"]
    assert _cells(page, "acme", "llm", "H100") == [
        "acme / llm",
        "H100",
        "8 of 8",
        "1, no limit",
        "0",
    ]
    assert _cells(page, "globex", model=HOSTILE_MODEL) == [
        "globex", HOSTILE_MODEL, "0 of 8", "0, no limit", "0"
    ]  # fmt: skip
    # the tenant's rows before its project's; a limit reached is marked, its bar full
    tenants = page.locator("#table-quotas tbody tr td:first-child").all_inner_texts()
    assert tenants == ["acme", "acme / llm", "globex"]
    full = page.locator('#table-quotas tr[data-project="llm"] td.usage.full .meter > div')
    assert full.evaluate("(bar) => bar.style.width") == "100%"
    half = page.locator('#table-quotas tr[data-tenant="acme"][data-project=""] td.usage')
    assert half.first.locator(".meter > div").evaluate("(bar) => bar.style.width") == "50%"
    # the model's name is text: no element made of it, no script run
    expect(page.locator("#table-quotas img")).to_have_count(0)
    assert page.evaluate("() => window.owned") is None
    _screenshot(page, "6-quotas")
    assert problems == []
    context.close()


def test_a_tenant_token_sees_its_own_quotas_only(
    api: Api, db: sessionmaker[Session], browser: Browser
) -> None:
    _quotas_and_a_claim(api, db)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _sign_in(page, api.url, make_token(db, "viewer", "acme"))
    expect(page.locator("#who")).to_contain_text("acme")
    expect(page.locator("#table-quotas tbody tr")).to_have_count(2)
    assert _cells(page, "acme") == ["acme", "every model", "8 of 16", "1 of 2", "0"]
    expect(page.locator('#table-quotas tr[data-tenant="globex"]')).to_have_count(0)
    _screenshot(page, "7-quotas-tenant")
    page.close()


def test_without_quotas_the_view_says_so(
    api: Api, db: sessionmaker[Session], browser: Browser
) -> None:
    fleet(api, server("gpu-0"))
    page = browser.new_page()
    _sign_in(page, api.url, api.token or "")
    expect(page.locator("#quotas-empty")).to_be_visible()
    expect(page.locator("#table-quotas")).to_be_hidden()
    page.close()
