"""Real OpenID Connect providers on loopback (oidc-provider-mock), and real tokens from them.

Tokens come through the provider's own authorization-code flow, driven with httpx as a
browser would: the authorize page, its login form posted with the user's subject, the
redirect's code exchanged at the token endpoint. The provider signs ID tokens (RS256,
``aud`` = the client id) with a key only it holds, and issues opaque access tokens that its
userinfo endpoint answers for.

``provider_signing_key`` reaches into the provider for its private key: only for the
faults a provider never produces by itself (a token not yet valid); the tests say so
where they use it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import httpx
import oidc_provider_mock
from joserfc.jwk import RSAKey

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never followed: the code is read off it


@dataclass
class Provider:
    """One provider on a loopback port."""

    server: Any  # werkzeug's server: .server_port, .app

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.server.server_port}"

    def add_user(self, subject: str, **claims: Any) -> None:
        """A user whose tokens carry ``claims`` (the provider's own user API)."""
        httpx.put(f"{self.issuer}/users/{subject}", json=claims).raise_for_status()

    def tokens(self, subject: str, client_id: str) -> dict[str, Any]:
        """The token response for ``subject`` signing in to ``client_id``: id_token (a
        JWT), access_token (opaque) and expires_in."""
        state = secrets.token_urlsafe(8)
        query = {
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "scope": "openid profile",
            "state": state,
        }
        with httpx.Client(base_url=self.issuer) as client:
            page = client.get("/oauth2/authorize", params=query)
            page.raise_for_status()
            assert "<form" in page.text  # the login page, as a person would see it
            login = client.post("/oauth2/authorize", params=query, data={"sub": subject})
            assert login.status_code == 302, login.text
            redirect = parse_qs(urlsplit(login.headers["location"]).query)
            assert redirect["state"] == [state]
            answer = client.post(
                "/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": redirect["code"][0],
                    "redirect_uri": REDIRECT_URI,
                    "client_id": client_id,
                    "client_secret": "any",
                },
            )
            answer.raise_for_status()
            result: dict[str, Any] = answer.json()
            return result

    def id_token(self, subject: str, client_id: str) -> str:
        token: str = self.tokens(subject, client_id)["id_token"]
        return token


@contextmanager
def running_provider(token_max_age: timedelta = timedelta(hours=1)) -> Iterator[Provider]:
    """A provider on a free loopback port; a negative ``token_max_age`` makes it issue
    tokens that expired that long ago (the provider's own setting, honoured as given)."""
    with oidc_provider_mock.run_server_in_thread(access_token_max_age=token_max_age) as server:
        yield Provider(server)


def provider_signing_key(provider: Provider) -> RSAKey:
    """The provider's private signing key, read from its storage inside a request context
    of its own app (the provider keeps it per app and offers no API for it)."""
    app: flask.Flask = provider.server.app
    with app.test_request_context("/"):
        app.preprocess_request()  # its before_request hook puts the storage on flask.g
        key: RSAKey = flask.g.oidc_provider_mock_storage.jwk
    return key


# --- crafting faults from a real token -------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(payload)), signature


def reassemble(header: dict[str, Any], payload: dict[str, Any], signature: str) -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), signature]
    )
