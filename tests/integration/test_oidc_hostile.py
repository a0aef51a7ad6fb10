"""Generated hostile OpenID Connect tokens: whatever a bearer token holds, the answer is
UNAUTHENTICATED or FORBIDDEN, naming a category and never the token, and nothing is done.

Two kinds, drawn by hypothesis (seeded: derandomize=True):
- tokens shaped like a JWT with hostile parts: headers with odd ``alg`` / ``kid`` / ``typ``
  values and types, payloads that are not objects, segments that are not base64url or not
  JSON, extra or missing dots, sizes from empty to large;
- tokens *signed with the provider's own key* (a fault no provider produces by itself: it
  stands for a misbehaving or misconfigured identity provider, and reaches the claim checks
  past the signature) whose claims have hostile values and types: ``exp`` as text, ``aud``
  as an object, ``sub`` as a number, groups and tenant claims of every shape.

The verifier is asked in process (hundreds of tokens in seconds: any exception that is not
a DomainError is a bug), then a sample goes over HTTP to the real server, on SQLite and
PostgreSQL: no 5xx, a coded error, and the devices and audit log unchanged.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import RSAKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import AuditEventRow, DeviceRow
from api.domain.errors import DomainError
from api.domain.identity import parse_issuers
from api.oidc import OidcVerifier
from api.settings import Settings
from tests.support.api import Api, make_tenant
from tests.support.oidc import Provider, provider_signing_key, running_provider
from tests.support.server import ServerThread

AUDIENCE = "portal"
TENANT = "hostile-a"
CREATE_DEVICE = 'mutation { createDevice(input: {hostname: "made-by-a-token"}) { id } }'
REFUSED = {"UNAUTHENTICATED", "FORBIDDEN"}


class Issuers:
    """A realm bound to a tenant, and an issuer naming the tenant in a claim (and asked
    about opaque tokens): both real providers on loopback."""

    def __init__(self, stack: ExitStack) -> None:
        self.realm: Provider = stack.enter_context(running_provider())
        self.shared: Provider = stack.enter_context(running_provider())
        self.realm_key: RSAKey = provider_signing_key(self.realm)
        self.shared_key: RSAKey = provider_signing_key(self.shared)
        for key in (self.realm_key, self.shared_key):
            key.ensure_kid()  # its thumbprint, as the provider names it when it publishes it

    def entries(self) -> list[dict[str, Any]]:
        return [
            {
                "issuer": self.realm.issuer,
                "audience": AUDIENCE,
                "tenant": TENANT,
                "roles": {"admins": "partner-admin", "readers": "viewer"},
            },
            {
                "issuer": self.shared.issuer,
                "audience": AUDIENCE,
                "tenantClaim": "tenant",
                "rolesClaim": "roles",
                "roles": {"ops": "platform-admin", "readers": "viewer"},
                "opaque": True,
            },
        ]


@pytest.fixture(scope="module")
def issuers() -> Iterator[Issuers]:
    with ExitStack() as stack:
        yield Issuers(stack)


# --- strategies ------------------------------------------------------------------------

ODD_TEXT = st.sampled_from(
    ["", " ", "none", "None", "RS256 ", "rs256", "HS256", "ES512", "PS256", "EdDSA", "../..",
     "\u0000", "\ud800", "é", "x" * 5000, "RS256\u0000", "null", "[]", "{}"]
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | ODD_TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment() -> st.SearchStrategy[str]:
    """One part of a compact JWS: base64url of JSON (of any shape), of bytes, or not
    base64url at all."""
    return st.one_of(
        JSON_VALUES.map(lambda value: b64(json.dumps(value).encode())),
        st.binary(max_size=64).map(b64),
        st.text(alphabet="abcXYZ019-_+/=.% ", max_size=40),
    )


@st.composite
def shaped_like_a_jwt(draw: st.DrawFn) -> str:
    header: dict[str, Any] = {
        "alg": draw(ODD_TEXT | st.sampled_from(["RS256", "ES256"]) | JSON_VALUES)
    }
    if draw(st.booleans()):
        header["kid"] = draw(JSON_VALUES)
    if draw(st.booleans()):
        header["typ"] = draw(JSON_VALUES)
    head = b64(json.dumps(header).encode()) if draw(st.booleans()) else draw(segment())
    if not head.startswith("eyJ") and draw(st.booleans()):
        head = "eyJ" + head  # so that it is taken for a JWT
    parts = [head, draw(segment()), draw(segment())]
    extra = draw(st.integers(min_value=-1, max_value=2))
    if extra < 0:
        parts = parts[:2]
    else:
        parts += [draw(segment()) for _ in range(extra)]
    return ".".join(parts)


@st.composite
def hostile_claims(draw: st.DrawFn) -> dict[str, Any]:
    """Claims whose every value may be wrong in value or in type; the rest plausible."""
    now = int(time.time())
    plausible: dict[str, Any] = {
        "sub": "mallory",
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "groups": ["admins"],
        "roles": ["readers"],
        "tenant": TENANT,
    }
    claims: dict[str, Any] = {}
    for name, value in plausible.items():
        fate = draw(st.sampled_from(["kept"] * 4 + ["odd", "missing"]))
        if fate != "missing":
            claims[name] = value if fate == "kept" else draw(JSON_VALUES)
    for name in ("nbf", "jti", "azp"):
        if draw(st.booleans()):
            claims[name] = draw(JSON_VALUES)
    return claims


@st.composite
def signed_by_the_provider(draw: st.DrawFn, issuers: Issuers) -> str:
    realm = draw(st.booleans())
    provider, key = (
        (issuers.realm, issuers.realm_key) if realm else (issuers.shared, issuers.shared_key)
    )
    claims = draw(hostile_claims())
    # Mostly the right issuer, so that the later checks are met too.
    issuer = draw(st.sampled_from(["right"] * 6 + ["missing", "odd"]))
    if issuer == "right":
        claims["iss"] = provider.issuer
    elif issuer == "odd":
        claims["iss"] = draw(JSON_VALUES | st.just(provider.issuer + "/"))
    # joserfc signs only well-typed headers: the odd ones are shaped_like_a_jwt's part.
    header: dict[str, Any] = {"alg": "RS256", "kid": key.kid}
    if draw(st.booleans()):
        header["typ"] = draw(st.sampled_from(["JWT", "at+jwt", "", "JWS"]))
    # Serialized here, ASCII-escaped: a lone surrogate travels as \\ud800, as it would.
    return jws.serialize_compact(header, json.dumps(claims).encode(), key)


def verifier_of(issuers: Issuers) -> OidcVerifier:
    return OidcVerifier(parse_issuers(issuers.entries(), "test"))


# --- the verifier, in process ----------------------------------------------------------

EXAMPLES = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_a_token_shaped_like_a_jwt_is_refused_with_a_domain_error(issuers: Issuers) -> None:
    verifier = verifier_of(issuers)

    @EXAMPLES
    @given(token=shaped_like_a_jwt())
    def check(token: str) -> None:
        with pytest.raises(DomainError) as refused:
            verifier.verify(token)
        assert refused.value.code in REFUSED
        assert token not in refused.value.message

    try:
        check()
    finally:
        verifier.close()


def test_hostile_claims_under_a_good_signature_are_refused_or_mapped_never_crash(
    issuers: Issuers,
) -> None:
    """Past the signature, the claim checks and the role and tenant mapping meet every
    value; a token either is refused with a DomainError or maps to a role and a tenant
    that are strings, as a good one would."""
    verifier = verifier_of(issuers)
    outcomes: Counter[str] = Counter()

    @EXAMPLES
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        token = data.draw(signed_by_the_provider(issuers))
        try:
            identity, expires_at = verifier.verify(token)
        except DomainError as refused:
            assert refused.code in REFUSED
            outcomes[refused.message.partition(": ")[2].partition("'")[0].strip()] += 1
            return
        assert isinstance(identity.subject, str) and identity.subject
        assert identity.tenant_slug is None or isinstance(identity.tenant_slug, str)
        assert expires_at is not None
        outcomes["accepted"] += 1

    try:
        check()
    finally:
        verifier.close()
    # The tokens got past the signature to every later check, and some all the way.
    assert "bad signature" not in outcomes, outcomes
    assert outcomes["accepted"] > 0 and len(outcomes) >= 5, outcomes


# --- over HTTP, against the real server ------------------------------------------------


@pytest.fixture(scope="module")
def hostile_server(database_url: str, issuers: Issuers) -> Iterator[ServerThread]:
    settings_ = Settings(
        database_url=database_url,
        lease_sweep_seconds=3600,
        queue_poll_seconds=3600,
        token_cache_seconds=0,
        oidc_issuers=parse_issuers(issuers.entries(), "test"),
    )
    with ServerThread(settings_) as running:
        yield running


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as session:
        devices = session.scalar(select(func.count()).select_from(DeviceRow)) or 0
        events = session.scalar(select(func.count()).select_from(AuditEventRow)) or 0
    return devices, events


def test_over_http_a_hostile_token_gets_a_coded_refusal_and_changes_nothing(
    hostile_server: ServerThread, issuers: Issuers, db: sessionmaker[Session]
) -> None:
    """A token the verifier refuses must be refused over HTTP too, coded, with nothing
    done; one it accepts (hostile claims can still add up to a good token: a partner-admin
    of the realm's tenant) may act as what it maps to, so only the answer's form is
    checked for it."""
    hostile_server.app.state.live_index.reset()
    make_tenant(db, TENANT)
    verifier = verifier_of(issuers)

    @settings(EXAMPLES, max_examples=80)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        token = data.draw(shaped_like_a_jwt() | signed_by_the_provider(issuers))
        try:
            verifier.verify(token)
            refused = False
        except DomainError:
            refused = True
        before = _counts(db)
        response = Api(hostile_server.url, token).post(CREATE_DEVICE)
        assert response.status_code == 200, response.text
        body = response.json()
        if not refused:
            return
        [error] = body["errors"]
        assert error["extensions"]["code"] in REFUSED, error
        assert token not in error["message"]
        assert body.get("data") is None
        assert _counts(db) == before

    try:
        check()
    finally:
        verifier.close()
