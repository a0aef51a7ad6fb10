"""OpenID Connect tokens: verified here, so that a portal can call the API with its user's
token and get exactly the rights a service token of the same role and tenant would give.

A JWT is verified locally with joserfc against the issuer's published keys (discovery,
then ``jwks_uri``), cached for an hour so that a request costs one signature check, and
fetched again when a token names a key we do not have (a rotation), at most once per
``refetch_seconds`` per issuer so that made-up ``kid`` values cannot turn us into a load
generator against the issuer. An issuer that is down does not stop its users while the
keys we hold are fresh. Only RS256 and ES256 verify: ``none``, HS256 (which would verify
with the *public* key as a shared secret) and the rest are refused before any key is used.

Opaque access tokens are asked about only at issuers configured with ``"opaque": true``,
through their userinfo endpoint, and the answer is kept 60 s (userinfo does not say how
long a token lives). RFC 7662 introspection is left out: it needs the resource server's own
client credentials, which the fixed configuration does not carry, and no provider on
loopback offers it to test against.

The claims → role and tenant rules are pure (api/domain/identity.py); this module fetches,
verifies and looks the tenant up. Every refusal names a category, never the token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from joserfc import jws
from joserfc.errors import (
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import TenantRow
from api.domain.access import Principal
from api.domain.errors import FORBIDDEN, UNAUTHENTICATED, DomainError
from api.domain.identity import Identity, IssuerConfig, identity_from_claims

log = logging.getLogger("gpuinv.oidc")

# The key type each accepted algorithm needs; anything else is refused unread.
ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
SKEW_SECONDS = 60
KEYS_SECONDS = 3600.0
OPAQUE_SECONDS = 60.0
_CLAIM_CATEGORIES = {
    "nbf": "not yet valid",
    "aud": "wrong audience",
    "iss": "wrong issuer",
    "iat": "issued in the future",
}


def looks_like_jwt(secret: str) -> bool:
    """A compact JWS: three base64url parts whose header starts '{"' (``eyJ``). The
    service's own tokens (``gpuinv_`` and base64url, no dots) never do."""
    return secret.startswith("eyJ") and secret.count(".") == 2


def refused(category: str) -> DomainError:
    return DomainError(UNAUTHENTICATED, f"OpenID Connect token refused: {category}")


@dataclass
class _IssuerState:
    """What we hold of one issuer: its discovery document and keys, and when we last
    asked for them (the rate limit)."""

    discovery: dict[str, Any] | None = None
    keys: KeySet | None = None
    fetched_at: float = float("-inf")
    last_attempt: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)


class OidcVerifier:
    """Verifies tokens of the configured issuers; thread-safe, one per process."""

    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        *,
        keys_seconds: float = KEYS_SECONDS,
        refetch_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuers = {config.issuer: config for config in issuers}
        self.keys_seconds = keys_seconds
        self.refetch_seconds = refetch_seconds
        self.clock = clock
        self._states = {config.issuer: _IssuerState() for config in issuers}
        self._opaque: dict[str, tuple[Identity, float]] = {}
        self._opaque_lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout_seconds, follow_redirects=False)

    @property
    def asks_about_opaque_tokens(self) -> bool:
        return any(config.opaque for config in self.issuers.values())

    def close(self) -> None:
        self._http.close()

    def verify(self, token: str) -> tuple[Identity, datetime | None]:
        """The identity a token proves and when that proof ends; raises DomainError."""
        if looks_like_jwt(token):
            return self._verify_jwt(token)
        if self.asks_about_opaque_tokens:
            return self._verify_opaque(token)
        raise refused("not a JWT, and no issuer is configured for opaque tokens")

    # --- JWTs, verified locally -------------------------------------------------------

    def _verify_jwt(self, token: str) -> tuple[Identity, datetime | None]:
        try:
            compact = jws.extract_compact(token.encode())
        except JoseError:
            raise refused("malformed token") from None
        header = compact.protected
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:  # [] is unhashable
            raise refused(f"unsupported algorithm {str(algorithm)[:16]!r} (RS256 or ES256)")
        try:
            unverified = json.loads(compact.payload)
        except ValueError:
            raise refused("malformed token") from None
        issuer = unverified.get("iss") if isinstance(unverified, dict) else None
        config = self.issuers.get(issuer) if isinstance(issuer, str) else None
        if config is None:
            raise refused("unknown issuer")
        key = self._key(config, header.get("kid"), algorithm)
        if not jws.validate_compact(compact, key, algorithms=[algorithm]):
            raise refused("bad signature")
        claims: dict[str, Any] = unverified  # now verified
        registry = JWTClaimsRegistry(
            leeway=SKEW_SECONDS,
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise refused("expired") from None
        except MissingClaimError as missing:
            raise refused(f"missing claim {missing.claim}") from None
        except ClaimError as wrong:
            raise refused(_CLAIM_CATEGORIES.get(wrong.claim, f"bad claim {wrong.claim}")) from None
        identity = identity_from_claims(config, claims)
        return identity, datetime.fromtimestamp(claims["exp"], UTC)

    def _key(self, config: IssuerConfig, kid: Any, algorithm: str) -> Key:
        state = self._states[config.issuer]
        key = self._fresh_key(state, kid)
        if key is None:
            with state.lock:  # one fetch at a time per issuer; the others then reuse it
                key = self._fresh_key(state, kid)
                if key is None and self.clock() - state.last_attempt >= self.refetch_seconds:
                    self._fetch_keys(config, state)
                    key = self._fresh_key(state, kid)
        if key is None:
            if state.keys is None or self.clock() - state.fetched_at >= self.keys_seconds:
                raise refused("issuer unreachable: its signing keys are not available")
            raise refused("unknown key")
        if key.key_type != ALGORITHMS[algorithm]:
            raise refused(f"unsupported algorithm {algorithm!r} for its key")
        return key

    def _fresh_key(self, state: _IssuerState, kid: Any) -> Key | None:
        if state.keys is None or self.clock() - state.fetched_at >= self.keys_seconds:
            return None
        keys = state.keys.keys
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((k for k in keys if k.kid == kid), None)

    def _fetch_keys(self, config: IssuerConfig, state: _IssuerState) -> None:
        """Discovery and JWKS, once; on failure the keys held stay (until they expire)."""
        state.last_attempt = self.clock()
        try:
            discovery = self._discover(config)
            response = self._http.get(discovery["jwks_uri"])
            response.raise_for_status()
            state.keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError, JoseError) as exc:
            log.warning("OpenID Connect issuer %s: cannot fetch keys: %s", config.issuer, exc)
            return
        state.discovery = discovery
        state.fetched_at = self.clock()

    def _discover(self, config: IssuerConfig) -> dict[str, Any]:
        url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        response = self._http.get(url)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict) or document.get("issuer") != config.issuer:
            # OpenID Connect Discovery 1.0 §4.3: the document must name the same issuer.
            raise ValueError(f"discovery names issuer {document.get('issuer')!r}")
        return document

    # --- opaque access tokens, asked about -----------------------------------------------

    def _verify_opaque(self, token: str) -> tuple[Identity, datetime | None]:
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        with self._opaque_lock:
            cached = self._opaque.get(digest)
        if cached is not None and now < cached[1]:
            return cached[0], datetime.now(UTC) + timedelta(seconds=cached[1] - now)
        unreachable = False
        for config in self.issuers.values():
            if not config.opaque:
                continue
            try:
                claims = self._userinfo(config, token)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                log.warning("OpenID Connect issuer %s: userinfo failed: %s", config.issuer, exc)
                unreachable = True
                continue
            if claims is None:
                continue
            identity = identity_from_claims(config, claims)
            with self._opaque_lock:
                if len(self._opaque) >= 10_000:
                    self._opaque.clear()
                self._opaque[digest] = (identity, now + OPAQUE_SECONDS)
            return identity, datetime.now(UTC) + timedelta(seconds=OPAQUE_SECONDS)
        raise refused("issuer unreachable" if unreachable else "unknown token")

    def _userinfo(self, config: IssuerConfig, token: str) -> dict[str, Any] | None:
        """The token holder's claims, or None when the issuer does not know the token."""
        state = self._states[config.issuer]
        discovery = state.discovery
        if discovery is None:
            discovery = state.discovery = self._discover(config)
        response = self._http.get(
            discovery["userinfo_endpoint"], headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code in (400, 401, 403):
            return None
        response.raise_for_status()
        claims = response.json()
        return claims if isinstance(claims, dict) else None


def sign_in_options(issuers: Sequence[IssuerConfig]) -> list[dict[str, str]]:
    """The issuers the dashboard offers "Sign in with …" for: those given a public
    ``clientId``. ``token`` says which of the token endpoint's answers to send to the API:
    the ID token when it is addressed to our audience (its ``aud`` is the client id),
    else the access token (a JWT for our audience, or an opaque one asked about)."""
    return [
        {
            "issuer": config.issuer,
            "clientId": config.client_id,
            "token": "id_token" if config.audience == config.client_id else "access_token",
        }
        for config in issuers
        if config.client_id is not None
    ]


def authenticate(
    verifier: OidcVerifier, session_factory: Callable[[], Session], token: str
) -> tuple[Principal, datetime | None]:
    """The principal of an OpenID Connect token, like a service token's; raises
    DomainError (UNAUTHENTICATED: not verified; FORBIDDEN: verified, but no tenant)."""
    identity, expires_at = verifier.verify(token)
    tenant_id = None
    if identity.tenant_slug is not None:
        with session_factory() as session:
            tenant_id = session.scalar(
                select(TenantRow.id).where(TenantRow.slug == identity.tenant_slug)
            )
        if tenant_id is None:
            raise DomainError(
                FORBIDDEN,
                f"OpenID Connect token refused: its tenant {identity.tenant_slug!r} does not "
                "exist here",
            )
    principal = Principal(
        name=identity.name,
        role=identity.role,
        tenant_id=tenant_id,
        tenant_slug=identity.tenant_slug,
        issuer=identity.issuer,
        subject=identity.subject,
    )
    return principal, expires_at
