"""Calling the API as the tests do: a GraphQL-over-HTTP client (``Api``), and the tokens and
tenants to call it with, written straight to the database as the CLI writes them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from api.db import tenant as tenant_db
from api.db import token as token_db
from api.db.session import unit_of_work
from api.domain.access import cli_principal

# The test servers trust a token they have read for this long: a token revoked or expired
# out of band (the CLI, another replica) is refused within it (see refused_once_cache_ends).
TOKEN_CACHE_SECONDS = 1.0


@dataclass
class Api:
    """A small GraphQL-over-HTTP client for tests: real requests to the real server."""

    url: str
    token: str | None = None

    def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        sent |= headers or {}
        return httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=sent,
            timeout=60,
        )

    def run(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.post(query, variables)
        assert response.status_code == 200, response.text
        return response.json()

    def refused_once_cache_ends(self, query: str) -> dict[str, Any]:
        """The first error for ``query``, which must come within the server's token cache
        bound (plus a second for the requests themselves): a token revoked or expired out
        of band may be trusted that long, never longer."""
        deadline = time.monotonic() + TOKEN_CACHE_SECONDS + 1.0
        while True:
            body = self.run(query)
            if body.get("errors"):
                return body["errors"][0]
            assert time.monotonic() < deadline, "still accepted after the token cache's bound"
            time.sleep(0.05)

    def ok(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.run(query, **variables)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def error(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.run(query, **variables)
        assert body.get("errors"), f"expected an error, got {body}"
        return body["errors"][0]

    def as_(self, token: str | None) -> Api:
        return Api(self.url, token)


def make_token(sessions: sessionmaker[Session], role: str, tenant: str | None = None) -> str:
    with unit_of_work(sessions) as session:
        _, secret = token_db.create_token(session, cli_principal(), role, tenant, None, None)
    return secret


def make_tenant(sessions: sessionmaker[Session], slug: str, *projects: str) -> None:
    who = cli_principal()
    with unit_of_work(sessions) as session:
        tenant_db.create_tenant(session, who, slug, None)
        for project in projects:
            tenant_db.create_project(session, who, slug, project, None)
