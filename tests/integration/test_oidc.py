"""OpenID Connect tokens against real providers on loopback (tests/support/oidc.py).

The service runs with GPUINV_OIDC_ISSUERS naming several providers: tenant A's realm and
tenant B's (a realm per tenant), one bound to a tenant that does not exist, one that issues
only expired tokens, one for opaque access tokens with a tenant claim, and one that goes
down during a test. A third provider, not configured, stands for a wrong issuer.

Tokens are the providers' own, through their authorization-code flow. Where a fault cannot
be had from a provider (alg none, HS256 over the public key, a tampered payload, a key the
issuer never published, a token not yet valid) the test crafts it from a real token, and
says so. The principal cache is off (token_cache_seconds=0): every request is verified.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

import httpx
import oidc_provider_mock
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import AuditEventRow, DeviceRow
from api.domain.errors import DomainError
from api.domain.identity import IssuerConfig, parse_issuers
from api.oidc import OidcVerifier
from api.settings import Settings
from tests.support.api import Api, make_tenant
from tests.support.oidc import (
    Provider,
    provider_signing_key,
    reassemble,
    running_provider,
    token_parts,
)
from tests.support.server import ServerThread, free_port
from tests.support.tenancy import ALPHA, BETA, build_world

ME = "{ me { name role tenant issuer subject } }"
CREATE_DEVICE = 'mutation { createDevice(input: {hostname: "oidc-made-01"}) { id hostname } }'
ALPHA_ROLES = {"alpha-admins": "partner-admin", "alpha-readers": "viewer"}


class Realms:
    """The providers and the issuer entries the server trusts."""

    def __init__(self, stack: ExitStack) -> None:
        self.alpha = stack.enter_context(running_provider())
        self.beta = stack.enter_context(running_provider())
        self.ghost = stack.enter_context(running_provider())
        self.expired = stack.enter_context(running_provider(timedelta(minutes=-10)))
        self.opaque = stack.enter_context(running_provider())
        self.stranger = stack.enter_context(running_provider())  # not configured
        self.down_port = free_port()  # started and stopped by its test
        self.down_issuer = f"http://localhost:{self.down_port}"
        self.alpha.add_user("alice", groups=["alpha-readers", "alpha-admins"])
        self.alpha.add_user("nobody", groups=["strangers"])
        self.beta.add_user("bert", groups=["beta-admins"])
        self.opaque.add_user("olga", groups=["readers"], tenant=ALPHA)
        for provider in (self.ghost, self.expired, self.stranger):
            provider.add_user("alice", groups=["alpha-admins"])

    def entries(self) -> list[dict[str, Any]]:
        def realm(issuer: str, audience: str, tenant: str, roles: dict[str, str]) -> Any:
            return {"issuer": issuer, "audience": audience, "tenant": tenant, "roles": roles}

        return [
            realm(self.alpha.issuer, "portal-a", ALPHA, ALPHA_ROLES),
            realm(self.beta.issuer, "portal-b", BETA, {"beta-admins": "partner-admin"}),
            realm(self.ghost.issuer, "portal-a", "ghost-tenant", ALPHA_ROLES),
            realm(self.expired.issuer, "portal-a", ALPHA, ALPHA_ROLES),
            realm(self.down_issuer, "portal-a", ALPHA, ALPHA_ROLES),
            {
                "issuer": self.opaque.issuer,
                "audience": "portal-o",
                "tenantClaim": "tenant",
                "roles": {"readers": "viewer"},
                "opaque": True,
            },
        ]


@pytest.fixture(scope="module")
def realms() -> Iterator[Realms]:
    with ExitStack() as stack:
        yield Realms(stack)


@pytest.fixture(scope="module")
def oidc_server(database_url: str, engine: Engine, realms: Realms) -> Iterator[ServerThread]:
    settings = Settings(
        database_url=database_url,
        lease_sweep_seconds=3600,
        queue_poll_seconds=3600,
        token_cache_seconds=0,  # verify every request: the tests are about verification
        oidc_issuers=parse_issuers(realms.entries(), "test"),
    )
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def tenants(db: sessionmaker[Session], oidc_server: ServerThread) -> sessionmaker[Session]:
    oidc_server.app.state.live_index.reset()
    make_tenant(db, ALPHA)
    make_tenant(db, BETA)
    return db


def as_(server: ServerThread, token: str) -> Api:
    return Api(server.url, token)


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as session:
        devices = session.scalar(select(func.count()).select_from(DeviceRow))
        events = session.scalar(select(func.count()).select_from(AuditEventRow))
    return devices or 0, events or 0


# --- accepted -------------------------------------------------------------------------


def test_me_shows_issuer_subject_and_the_strongest_mapped_role(
    oidc_server: ServerThread, realms: Realms, tenants: sessionmaker[Session]
) -> None:
    token = realms.alpha.id_token("alice", "portal-a")
    me = as_(oidc_server, token).ok(ME)["me"]
    assert me == {
        "name": f"{realms.alpha.issuer}#alice",
        "role": "partner-admin",  # alpha-readers (viewer) and alpha-admins: the strongest
        "tenant": ALPHA,
        "issuer": realms.alpha.issuer,
        "subject": "alice",
    }


def test_audit_log_names_issuer_and_subject(
    oidc_server: ServerThread, realms: Realms, tenants: sessionmaker[Session]
) -> None:
    alice = as_(oidc_server, realms.alpha.id_token("alice", "portal-a"))
    created = alice.ok(CREATE_DEVICE)["createDevice"]
    events = alice.ok(
        "query($id: ID!) { auditEvents(filter: {objectId: $id}) "
        "{ edges { node { actor action tenant } } } }",
        id=created["id"],
    )["auditEvents"]["edges"]
    assert [e["node"] for e in events] == [
        {"actor": f"{realms.alpha.issuer}#alice", "action": "create", "tenant": ALPHA}
    ]


def test_opaque_access_token_is_asked_about_at_the_opaque_issuer_only(
    oidc_server: ServerThread, realms: Realms, tenants: sessionmaker[Session]
) -> None:
    olga = realms.opaque.tokens("olga", "portal-o")["access_token"]
    me = as_(oidc_server, olga).ok(ME)["me"]
    assert me["name"] == f"{realms.opaque.issuer}#olga"
    assert (me["role"], me["tenant"]) == ("viewer", ALPHA)
    # Alpha's realm is not "opaque": its access tokens are never sent anywhere.
    alice_opaque = realms.alpha.tokens("alice", "portal-a")["access_token"]
    error = as_(oidc_server, alice_opaque).error(ME)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "unknown token" in error["message"]


def test_a_user_of_tenant_a_never_sees_tenant_b_items(
    oidc_server: ServerThread,
    realms: Realms,
    engine: Engine,
    sessions: sessionmaker[Session],
) -> None:
    world = build_world(oidc_server, engine, sessions)
    try:
        alice = as_(oidc_server, realms.alpha.id_token("alice", "portal-a"))
        bert = as_(oidc_server, realms.beta.id_token("bert", "portal-b"))
        listing = (
            "{ devices(first: 100) { edges { node { hostname tenant } } } "
            "allocations(first: 100) { edges { node { id tenant deviceDetails } } } "
            "auditEvents(first: 100) { edges { node { actor objectName tenant } } } }"
        )
        seen_by_alice = alice.post(listing).text
        seen_by_bert = bert.post(listing).text
        assert "alpha-gpu-01" in seen_by_alice and '"errors"' not in seen_by_alice
        assert [m for m in world.markers if m in seen_by_alice] == []
        assert "beta-gpu-01" in seen_by_bert  # B's own user does see B's: the check bites
    finally:
        world.close()


# --- refused: every way a token can be wrong, and nothing done ------------------------


def _not_yet_valid(realms: Realms) -> str:
    """Crafted: no provider issues a token whose nbf is ahead. Signed with the alpha
    provider's own key, so only nbf is wrong."""
    claims = token_parts(realms.alpha.id_token("alice", "portal-a"))[1]
    now = int(time.time())
    claims |= {"nbf": now + 600, "iat": now, "exp": now + 3600}
    key = provider_signing_key(realms.alpha)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def _unknown_key(realms: Realms) -> str:
    """Crafted: a real token's claims, signed by a key the issuer never published."""
    claims = token_parts(realms.alpha.id_token("alice", "portal-a"))[1]
    stray = RSAKey.generate_key(2048, parameters={"kid": "never-published"})
    return jwt.encode({"alg": "RS256", "kid": "never-published"}, claims, stray)


def _alg_none(realms: Realms) -> str:
    """Crafted: a real token with its header's alg set to none and no signature."""
    header, claims, _ = token_parts(realms.alpha.id_token("alice", "portal-a"))
    return reassemble(header | {"alg": "none"}, claims, "")


def _hs256_with_public_key(realms: Realms) -> str:
    """Crafted: HS256 keyed with the provider's public key (the classic confusion). By
    hand with hmac: joserfc itself refuses to make an HMAC key of a public key."""
    header, claims, _ = token_parts(realms.alpha.id_token("alice", "portal-a"))
    public_pem = provider_signing_key(realms.alpha).as_pem(private=False)
    unsigned = reassemble(header | {"alg": "HS256"}, claims, "").rstrip(".")
    mac = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _tampered(realms: Realms) -> str:
    """Crafted: a real viewer-only token whose payload is edited to claim admin."""
    realms.alpha.add_user("rita", groups=["alpha-readers"])
    header, claims, signature = token_parts(realms.alpha.id_token("rita", "portal-a"))
    return reassemble(header, claims | {"groups": ["alpha-admins"]}, signature)


REFUSALS: dict[str, tuple[Callable[[Realms], str], str, str]] = {
    "expired": (
        lambda r: r.expired.id_token("alice", "portal-a"),  # the provider's own, expired
        "UNAUTHENTICATED",
        "expired",
    ),
    "not yet valid": (_not_yet_valid, "UNAUTHENTICATED", "not yet valid"),
    "wrong audience": (
        lambda r: r.alpha.id_token("alice", "someone-elses-portal"),
        "UNAUTHENTICATED",
        "wrong audience",
    ),
    "wrong issuer": (
        lambda r: r.stranger.id_token("alice", "portal-a"),
        "UNAUTHENTICATED",
        "unknown issuer",
    ),
    "unknown kid": (_unknown_key, "UNAUTHENTICATED", "unknown key"),
    "alg none": (_alg_none, "UNAUTHENTICATED", "unsupported algorithm"),
    "hs256 with the public key": (_hs256_with_public_key, "UNAUTHENTICATED", "unsupported"),
    "tampered payload": (_tampered, "UNAUTHENTICATED", "bad signature"),
    "tenant does not exist": (
        lambda r: r.ghost.id_token("alice", "portal-a"),
        "FORBIDDEN",
        "'ghost-tenant' does not exist",
    ),
    "no role": (
        lambda r: r.alpha.id_token("nobody", "portal-a"),
        "FORBIDDEN",
        "maps to a role",
    ),
}


@pytest.mark.parametrize("fault", list(REFUSALS))
def test_refuses_a_bad_token_and_does_nothing(
    fault: str, oidc_server: ServerThread, realms: Realms, tenants: sessionmaker[Session]
) -> None:
    make_token, code, category = REFUSALS[fault]
    token = make_token(realms)
    before = _counts(tenants)
    error = as_(oidc_server, token).error(CREATE_DEVICE)
    assert error["extensions"]["code"] == code, error
    assert category in error["message"]
    assert not any(part and part in error["message"] for part in token.split("."))
    assert _counts(tenants) == before
    # Asked again (the unknown key now after a refetch): still refused, the same way.
    assert as_(oidc_server, token).error(ME)["extensions"]["code"] == code


def test_an_issuer_that_is_down_keeps_working_while_its_keys_are_fresh(
    oidc_server: ServerThread, realms: Realms, tenants: sessionmaker[Session]
) -> None:
    with oidc_provider_mock.run_server_in_thread(port=realms.down_port) as server:
        provider = Provider(server)
        provider.add_user("dora", groups=["alpha-readers"])
        token = provider.id_token("dora", "portal-a")
        assert as_(oidc_server, token).ok(ME)["me"]["subject"] == "dora"  # keys fetched
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{realms.down_issuer}/jwks")  # it is down
    assert as_(oidc_server, token).ok(ME)["me"]["subject"] == "dora"  # cached keys


def test_cached_keys_of_an_issuer_that_is_down_work_until_they_expire() -> None:
    """The verifier alone, with a clock the test moves (an hour cannot be waited for)."""
    now = [1000.0]
    port = free_port()
    issuer = f"http://localhost:{port}"
    config: IssuerConfig = parse_issuers(
        [{"issuer": issuer, "audience": "portal-a", "tenant": ALPHA, "roles": ALPHA_ROLES}],
        "test",
    )[0]
    verifier = OidcVerifier([config], keys_seconds=3600, clock=lambda: now[0])
    with oidc_provider_mock.run_server_in_thread(port=port) as server:
        provider = Provider(server)
        provider.add_user("dora", groups=["alpha-readers"])
        token = provider.id_token("dora", "portal-a")
        assert verifier.verify(token)[0].subject == "dora"
    now[0] += 3599  # down, keys an hour old less a second: still good
    assert verifier.verify(token)[0].subject == "dora"
    now[0] += 2  # the keys have expired and cannot be fetched again
    with pytest.raises(Exception, match="issuer unreachable") as refused:
        verifier.verify(token)
    assert getattr(refused.value, "code", None) == "UNAUTHENTICATED"
    verifier.close()


def test_unknown_keys_refetch_the_issuers_keys_at_most_once_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Made-up ``kid`` values must not turn the service into a load generator against the
    issuer: a burst of them costs one JWKS fetch per window (10 s). Counted at the
    provider, from its own request log; the verifier alone, with a clock the test moves."""
    caplog.set_level(logging.INFO, logger="werkzeug")
    now = [1000.0]

    def jwks_fetches() -> int:
        return sum("GET /jwks" in record.getMessage() for record in caplog.records)

    with running_provider() as provider:
        provider.add_user("dora", groups=["alpha-readers"])
        config = parse_issuers(
            [
                {
                    "issuer": provider.issuer,
                    "audience": "portal-a",
                    "tenant": ALPHA,
                    "roles": ALPHA_ROLES,
                }
            ],
            "test",
        )[0]
        verifier = OidcVerifier([config], refetch_seconds=10, clock=lambda: now[0])
        real = provider.id_token("dora", "portal-a")
        header, claims, signature = token_parts(real)
        assert verifier.verify(real)[0].subject == "dora"
        assert jwks_fetches() == 1

        def burst(count: int) -> None:
            for n in range(count):
                forged = reassemble(header | {"kid": f"made-up-{n}"}, claims, signature)
                with pytest.raises(DomainError, match="unknown key"):
                    verifier.verify(forged)

        now[0] += 1
        burst(50)
        assert jwks_fetches() == 1  # within the window of the last fetch: none
        now[0] += 10
        burst(50)
        assert jwks_fetches() == 2  # a new window: one fetch for the whole burst
        assert verifier.verify(real)[0].subject == "dora"  # a known kid: no fetch
        assert jwks_fetches() == 2
        verifier.close()
