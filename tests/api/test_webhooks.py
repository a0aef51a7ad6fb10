"""Managing webhooks through the API (DESIGN.md "Events"): createWebhook, webhooks,
deleteWebhook, webhookDeliveries; who may do what, the checks on targets, the secret kept
encrypted and never shown. Both backends, through the real server. (Sending them:
tests/integration/test_webhook_delivery.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import webhook as webhook_db
from api.db.base import utcnow
from api.db.models import AuditEventRow, WebhookRow
from api.settings import Settings
from tests.support.api import TOKEN_CACHE_SECONDS, Api, make_tenant, make_token
from tests.support.fleet import fleet, labels, server
from tests.support.server import ServerThread

KEY = Fernet.generate_key().decode()
SECRET = "a-long-enough-secret-7f3a"
PUBLIC = "https://hooks.example.com/gpuinv"  # a name: public, or not resolvable here
CREATE = """mutation($i: CreateWebhookInput!) { createWebhook(input: $i) {
  id url events tenant createdAt } }"""
LIST = "{ webhooks { id url events tenant createdAt } }"
DELETE = "mutation($id: ID!) { deleteWebhook(id: $id) { id url tenant } }"
DELIVERIES = """query($id: ID!, $first: Int) { webhookDeliveries(webhookId: $id, first: $first) {
  id eventId type subject status attempts lastAttemptAt nextAttemptAt deliveredAt responseCode
  error attemptLog { at } } }"""
MATCH = "mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"


def _server(database_url: str, allow_private: bool) -> ServerThread:
    return ServerThread(
        Settings(
            database_url=database_url,
            secret_key=KEY,
            webhook_allow_private=allow_private,
            webhook_dispatch=False,  # nothing is sent here: only managed
            lease_sweep_seconds=3600,
            token_cache_seconds=TOKEN_CACHE_SECONDS,
        )
    )


@pytest.fixture(scope="module")
def strict_server(database_url: str, engine: Any) -> Iterator[ServerThread]:
    """As deployed: a secret key, and no private targets."""
    with _server(database_url, allow_private=False) as running:
        yield running


@pytest.fixture(scope="module")
def lenient_server(database_url: str, engine: Any) -> Iterator[ServerThread]:
    """As the tests' receivers need: private targets allowed."""
    with _server(database_url, allow_private=True) as running:
        yield running


@pytest.fixture
def admin(strict_server: ServerThread, db: sessionmaker[Session]) -> Api:
    strict_server.app.state.live_index.reset()  # the wipe bypassed the change feed
    make_tenant(db, "acme")
    make_tenant(db, "other")
    return Api(strict_server.url, make_token(db, "platform-admin"))


def _create(caller: Api, **given: Any) -> dict[str, Any]:
    return caller.run(CREATE, i={"url": PUBLIC, "secret": SECRET} | given)


def _created(caller: Api, **given: Any) -> dict[str, Any]:
    body = _create(caller, **given)
    assert not body.get("errors"), body["errors"]
    created: dict[str, Any] = body["data"]["createWebhook"]
    return created


def _refusal(body: dict[str, Any]) -> tuple[str, str | None, str]:
    [error] = body["errors"]
    extensions = error["extensions"]
    return extensions["code"], extensions.get("field"), error["message"]


def test_a_webhook_is_created_listed_and_deleted_and_its_secret_never_shown(
    admin: Api, db: sessionmaker[Session]
) -> None:
    platform_hook = _created(admin)
    acme_hook = _created(admin, tenant="acme", events=["io.gpuinv.allocation.created"] * 2)
    assert platform_hook["tenant"] is None and platform_hook["events"] == []
    assert acme_hook["tenant"] == "acme"
    assert acme_hook["events"] == ["io.gpuinv.allocation.created"]  # once
    listed = admin.run(LIST)
    assert {w["id"] for w in listed["data"]["webhooks"]} == {platform_hook["id"], acme_hook["id"]}
    with db() as session:
        row = session.get(WebhookRow, acme_hook["id"])
        assert row is not None
        stored = row.secret
    assert SECRET not in stored and webhook_db.decrypt(KEY, stored) == SECRET  # encrypted
    gone = admin.ok(DELETE, id=acme_hook["id"])["deleteWebhook"]
    assert gone == {"id": acme_hook["id"], "url": PUBLIC, "tenant": "acme"}
    assert [w["id"] for w in admin.ok(LIST)["webhooks"]] == [platform_hook["id"]]
    with db() as session:
        audited = session.scalars(
            select(AuditEventRow).where(AuditEventRow.object_kind == "webhook")
        ).all()
    assert sorted(a.action for a in audited) == ["create", "create", "delete"]
    assert SECRET not in repr([(a.before, a.after) for a in audited])
    assert SECRET not in repr(listed) and stored not in repr(listed)


def test_without_a_secret_key_creating_a_webhook_is_refused_with_the_reason(
    api: Api, db: sessionmaker[Session]
) -> None:
    code, _, message = _refusal(_create(api))  # the shared test server has no key
    assert code == "NOT_CONFIGURED" and "GPUINV_SECRET_KEY" in message
    with db() as session:
        assert session.scalars(select(WebhookRow)).all() == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example.com/x", "only http and https"),
        ("hooks.example.com/x", "only http and https"),
        ("https:///x", "names no host"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://hooks.example.com/a b", "without spaces"),
        ("", "without spaces"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "localhost resolves to"),
        ("http://hooks.localhost/hook", "loopback"),
        ("http://2130706433/hook", "resolves to 127.0.0.1"),  # 127.0.0.1, spelt as a number
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.1.20/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),  # cloud metadata
        ("http://[fe80::1]/hook", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://100.64.0.1/hook", "not globally routable"),
        ("http://224.0.0.1/hook", "multicast"),
    ],
)
def test_targets_that_are_refused(admin: Api, url: str, why: str) -> None:
    code, field, message = _refusal(_create(admin, url=url))
    assert (code, field) == ("BAD_INPUT", "url") and message.startswith("url: ")
    assert why in message, message


def test_private_targets_are_taken_when_the_service_allows_them(
    lenient_server: ServerThread, db: sessionmaker[Session]
) -> None:
    admin = Api(lenient_server.url, make_token(db, "platform-admin"))
    for url in ("http://127.0.0.1:9000/hook", "http://localhost:9000/hook", "http://10.0.0.7/h"):
        assert _created(admin, url=url)["url"] == url
    code, _, message = _refusal(_create(admin, url="http://224.0.0.1/hook"))
    assert code == "BAD_INPUT" and "multicast" in message  # never a target


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ({"events": ["io.gpuinv.allocation.created", "io.gpuinv.nope"]}, "events",
         "unknown event type 'io.gpuinv.nope'"),
        ({"events": ["allocation.created"]}, "events", "'allocation.created'"),
        ({"secret": "short"}, "secret", "16 to 1024 characters"),
        ({"secret": "x" * 1025}, "secret", "got 1025"),
        ({"tenant": "nope"}, None, "tenant 'nope' not found"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field_and_value(
    admin: Api, db: sessionmaker[Session], given: dict[str, Any], field: str | None, words: str
) -> None:
    code, named, message = _refusal(_create(admin, **given))
    assert code == ("NOT_FOUND" if field is None else "BAD_INPUT") and named == field
    assert words in message and (field is None or message.startswith(f"{field}: "))
    with db() as session:
        assert session.scalars(select(WebhookRow)).all() == []


def test_a_partner_admin_manages_its_own_tenants_webhooks_only(
    admin: Api, db: sessionmaker[Session]
) -> None:
    acme = admin.as_(make_token(db, "partner-admin", "acme"))
    other = admin.as_(make_token(db, "partner-admin", "other"))
    platform_hook = _created(admin)
    mine = _created(acme)  # no tenant named: its own
    assert mine["tenant"] == "acme" and _created(acme, tenant="acme")["tenant"] == "acme"
    theirs = _created(other)
    assert _refusal(_create(acme, tenant="other"))[0] == "FORBIDDEN"
    assert {w["tenant"] for w in acme.ok(LIST)["webhooks"]} == {"acme"}
    for foreign in (theirs["id"], platform_hook["id"], "no-such-webhook"):
        for query, variables in ((DELETE, {"id": foreign}), (DELIVERIES, {"id": foreign})):
            code, _, message = _refusal(acme.run(query, **variables))
            assert (code, message) == ("NOT_FOUND", f"webhook {foreign!r} not found")
    assert other.ok(DELETE, id=theirs["id"])["deleteWebhook"]["id"] == theirs["id"]
    for role in ("provisioner", "viewer"):
        caller = admin.as_(make_token(db, role, "acme"))
        for body in (caller.run(LIST), _create(caller), caller.run(DELETE, id=mine["id"])):
            assert _refusal(body)[0] == "FORBIDDEN"
    assert len(admin.ok(LIST)["webhooks"]) == 3  # the platform's, and acme's two


def test_deliveries_name_their_event_newest_first(admin: Api, db: sessionmaker[Session]) -> None:
    hook = _created(admin, tenant="acme")
    fleet(admin, server("gpu-0"), server("gpu-1"))
    acme = admin.as_(make_token(db, "provisioner", "acme"))
    made = []
    for n in range(2):
        given = {"environment": f"env-{n}", "labels": labels(), "variables": {"gpu": "8"}}
        made.append(acme.ok(MATCH, i=given)["matchDevice"]["allocation"]["id"])
    assert admin.ok(DELIVERIES, id=hook["id"])["webhookDeliveries"] == []  # not fanned out
    webhook_db.fan_out(db, utcnow())
    found = admin.ok(DELIVERIES, id=hook["id"])["webhookDeliveries"]
    assert [d["subject"] for d in found] == made[::-1]
    for delivery in found:
        assert delivery["type"] == "io.gpuinv.allocation.created" and delivery["eventId"]
        assert delivery["status"] == "PENDING" and delivery["attempts"] == 0
        assert delivery["nextAttemptAt"] and delivery["attemptLog"] == []
    assert len(admin.ok(DELIVERIES, id=hook["id"], first=1)["webhookDeliveries"]) == 1
    code, field, _ = _refusal(admin.run(DELIVERIES, id=hook["id"], first=0))
    assert (code, field) == ("BAD_INPUT", "first")
