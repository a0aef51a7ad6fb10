"""The dashboard's "Sign in with …" in a real headless Chromium, through a real OpenID Connect
provider's login page (oidc-provider-mock on loopback, tests/support/oidc.py): the
authorization-code flow with PKCE, run by the page itself (api/dashboard/dashboard-oidc.js).

The provider does not enforce PKCE (it registers no code-challenge check), so the test checks
the pair itself from what the browser sent: the challenge on the way out is the SHA-256 of
the verifier sent to the token endpoint. Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect
from sqlalchemy.orm import Session, sessionmaker

from api.domain.identity import parse_issuers
from api.settings import Settings
from tests.support.api import Api, make_tenant
from tests.support.oidc import Provider, running_provider
from tests.support.server import ServerThread

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
CLIENT = "gpuinv-dashboard"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        running.add_user("ada", groups=["acme-viewers"])
        running.add_user("eve", groups=["strangers"])  # maps to no role
        yield running


@pytest.fixture(scope="module")
def staff_provider() -> Iterator[Provider]:
    """A shared issuer naming the tenant in a claim, whose access tokens are opaque."""
    with running_provider() as running:
        running.add_user("sam", roles=["operators"], tenant="acme")
        yield running


@pytest.fixture(scope="module")
def portal(
    database_url: str, provider: Provider, staff_provider: Provider
) -> Iterator[ServerThread]:
    entries = [
        {
            "issuer": provider.issuer,
            "audience": CLIENT,  # the ID token's audience: the dashboard sends the ID token
            "clientId": CLIENT,
            "tenant": "acme",
            "roles": {"acme-viewers": "viewer"},
        },
        {
            "issuer": staff_provider.issuer,
            "audience": "gpuinv-api",  # not the client: the dashboard sends the access token
            "clientId": CLIENT,
            "tenantClaim": "tenant",
            "rolesClaim": "roles",
            "roles": {"operators": "provisioner"},
            "opaque": True,  # ... which the service asks the issuer's userinfo about
        },
    ]
    settings = Settings(
        database_url=database_url,
        lease_sweep_seconds=3600,
        queue_poll_seconds=3600,
        oidc_issuers=parse_issuers(entries, "test"),
    )
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def acme(db: sessionmaker[Session], portal: ServerThread) -> None:
    portal.app.state.live_index.reset()
    make_tenant(db, "acme")


def _page(browser: Browser) -> tuple[Page, list[str]]:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    return page, problems


def _sign_in_at_provider(
    page: Page, portal: ServerThread, provider: Provider, subject: str
) -> None:
    page.goto(portal.url + "/")
    button = page.get_by_role("button", name=f"Sign in with {provider.issuer.split('//')[1]}")
    expect(button).to_be_visible()
    expect(page.locator("#token")).to_be_visible()  # the pasted-token form stays
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "oidc-sign-in.png"))
    button.click()
    page.wait_for_url(f"{provider.issuer}/oauth2/authorize?*")
    page.fill("#subject-input", subject)  # the provider's own login page
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(portal.url + "/")


def test_sign_in_with_the_issuer_shows_the_fleet_as_the_user(
    portal: ServerThread, provider: Provider, acme: None, browser: Browser
) -> None:
    page, problems = _page(browser)
    sent: list[Request] = []
    page.on("request", lambda request: sent.append(request))

    _sign_in_at_provider(page, portal, provider, "ada")

    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#who")).to_have_text(f"{provider.issuer}#ada · viewer · acme")
    assert "code=" not in page.url  # the single-use code is dropped from the address
    page.screenshot(path=str(ARTIFACTS / "oidc-signed-in.png"), full_page=True)

    authorize = next(r for r in sent if r.url.startswith(f"{provider.issuer}/oauth2/authorize"))
    asked = parse_qs(urlsplit(authorize.url).query)
    assert asked["code_challenge_method"] == ["S256"]
    assert asked["client_id"] == [CLIENT] and asked["redirect_uri"] == [portal.url + "/"]
    exchange = next(r for r in sent if r.url == f"{provider.issuer}/oauth2/token")
    form = parse_qs(exchange.post_data or "")
    digest = hashlib.sha256(form["code_verifier"][0].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == asked["code_challenge"][0]
    assert "client_secret" not in form  # a public client

    # What the tab keeps is the provider's ID token, and the service takes it as ada's.
    token = page.evaluate("sessionStorage.getItem('gpuinv.token')")
    me = Api(portal.url, token).ok("{ me { issuer subject role tenant } }")["me"]
    assert me == {"issuer": provider.issuer, "subject": "ada", "role": "viewer", "tenant": "acme"}

    page.reload()  # kept for the tab: no second sign-in
    expect(page.locator("#who")).to_contain_text("#ada")
    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    assert problems == []


def test_a_user_the_service_grants_nothing_is_told_so_on_the_sign_in_form(
    portal: ServerThread, provider: Provider, acme: None, browser: Browser
) -> None:
    page, problems = _page(browser)
    _sign_in_at_provider(page, portal, provider, "eve")
    expect(page.locator("#signin-error")).to_contain_text("maps to a role")
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('gpuinv.token')") is None
    assert problems == []


def test_an_answer_to_a_sign_in_this_tab_did_not_start_is_refused(
    portal: ServerThread, provider: Provider, acme: None, browser: Browser
) -> None:
    """A code planted in a link (login CSRF): no sign-in is pending in this tab, so the
    code is never exchanged."""
    page, problems = _page(browser)
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    page.goto(portal.url + "/?code=planted&state=forged")
    expect(page.locator("#signin-error")).to_contain_text("does not belong to a sign-in")
    assert not any(url.startswith(provider.issuer) for url in sent)
    assert "code=" not in page.url
    assert problems == []


def test_an_issuer_of_opaque_access_tokens_signs_in_with_the_access_token(
    portal: ServerThread, staff_provider: Provider, acme: None, browser: Browser
) -> None:
    page, problems = _page(browser)
    _sign_in_at_provider(page, portal, staff_provider, "sam")
    expect(page.locator("#who")).to_have_text(f"{staff_provider.issuer}#sam · provisioner · acme")
    token = page.evaluate("sessionStorage.getItem('gpuinv.token')")
    assert token.count(".") != 2  # the opaque access token, not the ID token
    assert problems == []


def test_only_issuers_with_a_client_id_are_offered(
    portal: ServerThread, provider: Provider, staff_provider: Provider
) -> None:
    offered = httpx.get(portal.url + "/dashboard/sign-in.json").json()
    assert offered == {
        "issuers": [
            {"issuer": provider.issuer, "clientId": CLIENT, "token": "id_token"},
            {"issuer": staff_provider.issuer, "clientId": CLIENT, "token": "access_token"},
        ]
    }
