"""GraphiQL at /graphql works with no network beyond the service: its scripts, styles and
icon are served by the service itself (api/graphiql/), never by a CDN. Checked in Debian's
headless Chromium with every request to another host refused, and over plain HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import quote, urlencode, urljoin, urlsplit

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, Request, Route, expect
from sqlalchemy import Engine

from api import graphiql
from api.settings import Settings
from tests.support.api import Api
from tests.support.server import ServerThread

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "graphiql"
HTML = {"Accept": "text/html"}
# What each kind of asset must be served as, for a browser to use it.
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".ico": ("image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon"),
    ".svg": ("image/svg+xml",),
}


def _offline_page(
    browser: Browser,
    url: str,
) -> tuple[BrowserContext, Page, list[str], list[str], list[str]]:
    """A page whose requests to any host but 127.0.0.1 are refused, and lists of what went
    wrong: requests that tried to leave, console errors and answers of 400 or more."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    left: list[str] = []

    def only_loopback(route: Route, request: Request) -> None:
        if urlsplit(request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            left.append(request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_loopback)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failed.append(f"{r.failure} {r.url}"))
    page.goto(url)
    return context, page, left, errors, failed


def test_graphiql_runs_a_query_with_no_request_leaving_the_host(
    api: Api,
    browser: Browser,
) -> None:
    # The query and the token's header from the URL, as GraphiQL's shared links carry them.
    query = urlencode(
        {
            "q": "{ me { role } }",
            "headers": json.dumps({"Authorization": f"Bearer {api.token}"}),
        },
        quote_via=quote,  # %20, as the page's encodeURIComponent writes it: not "+"
    )
    context, page, left, errors, failed = _offline_page(browser, f"{api.url}/graphql?{query}")

    expect(page.locator(".graphiql-container .graphiql-query-editor")).to_be_visible()
    page.locator(".graphiql-execute-button").click()
    expect(page.locator(".graphiql-response")).to_contain_text('"role": "platform-admin"')

    # The documentation explorer loads the schema by introspection.
    page.get_by_label("Show Documentation Explorer").click()
    expect(page.locator(".graphiql-doc-explorer")).to_contain_text("Query")
    # ... and the explorer plugin, the other script of strawberry's page.
    page.get_by_label("Show GraphiQL Explorer").click()
    expect(page.locator(".graphiql-explorer-root")).to_contain_text("me")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "graphiql-offline.png"))

    # The icon the page names answers. Asked for outside the page: Playwright drops the
    # browser's favicon requests while it routes requests, fetch()'s included.
    icon = page.request.get(page.locator("link[rel=icon]").evaluate("link => link.href"))
    assert (icon.status, icon.headers["content-type"]) == (200, "image/svg+xml")
    assert left == [], "requests left 127.0.0.1"
    assert errors == []
    assert failed == []
    context.close()


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)


def test_the_graphiql_page_names_no_outside_url_and_its_assets_are_served(api: Api) -> None:
    page_url = f"{api.url}/graphql"
    page = httpx.get(page_url, headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # ... and a browser may fetch nothing from elsewhere for it, whatever the page says
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert re.findall(r"https?://[^\s\"'<>]+", page.text) == []
    references = _references(page.text)
    # react, react-dom, graphiql (script and style), its explorer plugin (the same), an icon
    assert len(references) >= 7, references
    for reference in references:
        url = urljoin(page_url, reference)
        assert urlsplit(url).netloc == urlsplit(api.url).netloc, url
        answer = httpx.get(url)
        assert answer.status_code == 200, url
        kind = answer.headers["content-type"].partition(";")[0]
        assert kind in CONTENT_TYPES[Path(urlsplit(url).path).suffix], (url, kind)
        assert len(answer.content) > 100, url


def test_favicon_is_an_svg_served_at_the_root(api: Api) -> None:
    icon = httpx.get(f"{api.url}/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.lstrip().startswith("<svg")


def test_the_vendored_files_are_those_assets_json_names() -> None:
    """Byte for byte what the npm packages hold (python -m api.graphiql.fetch checked them
    against strawberry's integrity hashes when it wrote them): no hand edits."""
    assets = json.loads(graphiql.MANIFEST.read_text())
    assert {"react", "react-dom", "graphiql", "@graphiql/plugin-explorer"} == {
        asset["package"] for asset in assets.values()
    }
    for name, asset in assets.items():
        digest = hashlib.sha384((graphiql.STATIC / name).read_bytes()).digest()
        assert "sha384-" + base64.b64encode(digest).decode() == asset["integrity"], name
        assert f"graphiql/{name}" in graphiql.page_html(), f"the page does not load {name}"


def test_graphiql_off_serves_neither_the_page_nor_its_assets(
    database_url: str,
    engine: Engine,  # migrated: the server warms its match index at start
) -> None:
    settings = Settings(database_url=database_url, graphiql=False, lease_sweep_seconds=3600)
    with ServerThread(settings) as off:  # GPUINV_GRAPHIQL=0
        assert httpx.get(f"{off.url}/graphql", headers=HTML).status_code == 404
        assert httpx.get(f"{off.url}/graphiql/graphiql.min.js").status_code == 404
        assert httpx.get(f"{off.url}/favicon.ico").status_code == 200  # the dashboard's too
