"""The fleet dashboard at / in a real headless Chromium (Debian's, driven by Playwright with
its path given: no browser download; the ``browser`` fixture of tests/support/browser.py).
Screenshots are kept in test-artifacts/dashboard/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session, sessionmaker

from tests.support.api import Api, make_tenant, make_token
from tests.support.fleet import fleet, labels, server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id } } }"""


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _fleet(api: Api, db: sessionmaker[Session]) -> None:
    """acme's servers in mumbai, globex's in pune: not the shared pool (no tenant), which
    every tenant would see."""
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    fleet(
        api,
        *(server(f"mum-{i}", site="mumbai", tenant="acme") for i in range(3)),
        *(server(f"pun-{i}", site="pune", vendor="AMD", tenant="globex") for i in range(2)),
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
    # a bar per series drawn: pune has nothing allocated, so no (empty) allocated bar
    expect(page.locator("#chart-sites rect.allocated")).to_have_count(1)
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


# -- the charts' geometry (issue item 11) ----------------------------------------------------

WIDTHS = (800, 1280, 1920)
MIN_FONT_PX = 11
# Real model names, as the fleet's inventories spell them, and long site names.
MODELS = {
    "NVIDIA": "H100-SXM5-80GB",
    "AMD": "MI300X-OAM-192GB",
    "Intel": "Gaudi3-HL-325L-128GB",
}


def _gpu_server(hostname: str, vendor: str, **extra: Any) -> dict[str, Any]:
    gpus = [{"vendorCode": vendor, "modelNo": MODELS[vendor]}] * 8
    return server(hostname, vendor=vendor, **extra) | {"gpus": gpus}


def _long_named_fleet(api: Api, db: sessionmaker[Session]) -> None:
    make_tenant(db, "acme")
    fleet(
        api,
        *(
            _gpu_server(f"fra-{i}", "NVIDIA", site="frankfurt-am-main-fra2", tenant="acme")
            for i in range(3)
        ),
        *(_gpu_server(f"ord-{i}", "AMD", site="chicago-elk-grove-ord1") for i in range(2)),
        _gpu_server("bom-0", "Intel", site="mumbai"),
        _gpu_server("bom-1", "Intel", site="mumbai", status="maintenance"),
        _gpu_server("lab-0", "NVIDIA"),  # no site
    )
    request = {"labels": labels(), "variables": {"gputype": "NVIDIA", "gpu": "8"}}
    api.ok(MATCH, input={"environment": "train-1", "tenant": "acme", **request})


def _sign_in(page: Page, api: Api) -> None:
    page.goto(api.url + "/")
    page.fill("#token", api.token or "")
    page.click("#signin button[type=submit]")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#refreshed")).not_to_be_empty()  # rendered


# What the browser rendered: boxes in CSS pixels of the page, font sizes as rendered (the
# computed size times the SVG's scale to the screen), the legend's series.
MEASURE = """() => {
  const box = (e) => { const r = e.getBoundingClientRect();
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom }; };
  const charts = {};
  for (const chart of document.querySelectorAll(".charts svg")) {
    charts[chart.id] = {
      svg: box(chart),
      figure: box(chart.closest("figure")),
      texts: [...chart.querySelectorAll("text")].map((t) => {
        const m = t.getScreenCTM();
        return { text: t.textContent, box: box(t),
          px: parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b) };
      }),
      bars: [...chart.querySelectorAll("rect")].map((r) => (
        { series: r.getAttribute("class"), box: box(r) })),
    };
  }
  const legend = [...document.querySelectorAll(".charts .legend .swatch")].map(
    (s) => [...s.classList].filter((c) => c !== "swatch").join(" "));
  return { charts, legend };
}"""

SLACK = 0.5  # px: anti-aliasing, not layout


def _inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["left"] >= outer["left"] - SLACK
        and inner["top"] >= outer["top"] - SLACK
        and inner["right"] <= outer["right"] + SLACK
        and inner["bottom"] <= outer["bottom"] + SLACK
    )


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    width = min(a["right"], b["right"]) - max(a["left"], b["left"])
    height = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
    return width > SLACK and height > SLACK


def _drawn(bar: dict[str, Any]) -> bool:
    box = bar["box"]
    return box["right"] - box["left"] > 0 and box["bottom"] - box["top"] > 0


def _chart_problems(page: Page) -> list[str]:
    """Every way the charts fail a reader, as sentences; [] when they do not."""
    measured = page.evaluate(MEASURE)
    problems: list[str] = []
    drawn: set[str] = set()
    for name, chart in measured["charts"].items():
        if not _inside(chart["svg"], chart["figure"]):
            problems.append(f"{name}: the chart runs out of its box {chart['figure']}")
        texts, bars = chart["texts"], [b for b in chart["bars"] if _drawn(b)]
        drawn |= {b["series"] for b in bars}
        for i, text in enumerate(texts):
            label, box = repr(text["text"]), text["box"]
            if text["px"] < MIN_FONT_PX or box["bottom"] - box["top"] < MIN_FONT_PX:
                problems.append(f"{name}: {label} is {text['px']:.1f} px")
            if not _inside(box, chart["svg"]):
                problems.append(f"{name}: {label} is clipped: {box} outside {chart['svg']}")
            problems += [
                f"{name}: {label} runs into a {bar['series']} bar"
                for bar in bars
                if _overlap(box, bar["box"])
            ]
            problems += [
                f"{name}: {label} overlaps {other['text']!r}"
                for other in texts[i + 1 :]
                if _overlap(box, other["box"])
            ]
    legend = set(measured["legend"])
    problems += [f"the legend lists {s!r}, which no bar draws" for s in sorted(legend - drawn)]
    problems += [f"no legend entry for the {s!r} bars" for s in sorted(drawn - legend)]
    return problems


@pytest.mark.parametrize("width", WIDTHS)
def test_chart_labels_fit_stay_readable_and_the_legend_matches_at_each_width(
    api: Api, db: sessionmaker[Session], browser: Browser, width: int
) -> None:
    _long_named_fleet(api, db)
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _sign_in(page, api)
    _screenshot(page, f"4-charts-{width}")
    labels_drawn = page.locator("#chart-models text").all_text_contents()
    for vendor, model in MODELS.items():
        assert f"{vendor.upper()} {model}" in labels_drawn  # whole, not cut short
    sites = page.locator("#chart-sites text").all_text_contents()
    assert {"frankfurt-am-main-fra2", "chicago-elk-grove-ord1", "(no site)"} <= set(sites)
    # the maintenance node is drawn, so its series is in the legend
    expect(page.locator(".charts .legend .swatch.unavailable")).to_have_count(1)
    assert _chart_problems(page) == []
    assert errors == []
    context.close()


def test_the_legend_lists_only_the_series_the_bars_draw(
    api: Api, db: sessionmaker[Session], browser: Browser
) -> None:
    _fleet(api, db)  # every node allocatable: no "not allocatable" bar anywhere
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    _sign_in(page, api)
    assert _chart_problems(page) == []
    assert page.locator(".charts .legend .swatch").evaluate_all(
        "(swatches) => swatches.map((s) => s.classList[1])"
    ) == ["allocated", "available"]
    expect(page.locator(".charts svg rect.unavailable")).to_have_count(0)
    page.close()


def test_the_charts_are_laid_out_again_when_the_window_is_resized(
    api: Api, db: sessionmaker[Session], browser: Browser
) -> None:
    _long_named_fleet(api, db)
    page = browser.new_page(viewport={"width": 1920, "height": 900})
    _sign_in(page, api)
    for width in (800, 360, 1280):  # 360: the labels take a line of their own
        page.set_viewport_size({"width": width, "height": 900})
        page.evaluate(
            "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )
        assert _chart_problems(page) == [], width
        _screenshot(page, f"5-resized-{width}")
    page.close()
