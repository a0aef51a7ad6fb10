"""What an OpenID Connect token costs a request, next to a service token (issue 18: at most
0.2 ms more, keys cached).

What is measured, and why
-------------------------
One ``gpuinv serve`` (one worker, SQLite) trusting one OpenID Connect provider
(oidc-provider-mock, in this process, on loopback) for a tenant. This process is the load
generator: ``{ me { name } }`` asked alternately with the provider's ID token (a real
RS256 JWT through its authorization-code flow) and with a platform-admin service token,
each request its own HTTP call on a kept-alive connection, after a warm-up that fetched
the provider's keys. Two servers: one with the default principal cache
(GPUINV_TOKEN_CACHE_SECONDS=5, as deployed: both kinds of token are then mostly a cache
hit) and one with the cache off (=0: every JWT request checks its signature and claims and
reads its tenant, every service-token request reads its token). Printed per server: p50
and p99 per kind, the median over 3 runs of each, and the JWT's extra time.

Percentiles are nearest-rank (bench/stats.py). Nothing is asserted about time.
``python -m bench.oidc --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import oidc_provider_mock  # type: ignore[import-untyped]  # ships no types

from bench.service import admin_token, cli, fresh_database, running_service, service_env
from bench.stats import percentile

QUERY = {"query": "{ me { name } }"}
TENANT = "bench-oidc"
REDIRECT_URI = "http://127.0.0.1:9/callback"


def provider_id_token(issuer: str, subject: str, client_id: str) -> str:
    """An ID token through the provider's authorization-code flow, driven as a browser."""
    query = {
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid",
        "state": "bench",
    }
    with httpx.Client(base_url=issuer) as client:
        client.put(f"/users/{subject}", json={"groups": ["readers"]}).raise_for_status()
        login = client.post("/oauth2/authorize", params=query, data={"sub": subject})
        code = httpx.URL(login.headers["location"]).params["code"]
        answer = client.post(
            "/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "client_id": client_id,
                "client_secret": "any",
            },
        )
        answer.raise_for_status()
        token: str = answer.json()["id_token"]
        return token


def one_run(base_url: str, tokens: dict[str, str], requests: int) -> dict[str, list[float]]:
    """``requests`` timed calls per kind, interleaved so both meet the same conditions."""
    times: dict[str, list[float]] = {kind: [] for kind in tokens}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for _ in range(requests):
            for kind, token in tokens.items():
                started = time.perf_counter()
                response = client.post(
                    "/graphql", json=QUERY, headers={"Authorization": f"Bearer {token}"}
                )
                times[kind].append(time.perf_counter() - started)
                if response.status_code != 200 or "errors" in response.json():
                    raise SystemExit(f"{kind}: {response.text}")
    return times


def measure(cache_seconds: str, requests: int, runs: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        oidc_provider_mock.run_server_in_thread() as provider,
    ):
        issuer = f"http://localhost:{provider.server_port}"
        workdir = Path(tmp)
        with fresh_database("sqlite", "", workdir, "bench_oidc") as url:
            cli(url, "db", "upgrade")
            cli(url, "tenant", "create", TENANT)
            tokens = {
                "jwt": provider_id_token(issuer, "reader", "portal"),
                "service": admin_token(url),
            }
            issuers = [
                {
                    "issuer": issuer,
                    "audience": "portal",
                    "tenant": TENANT,
                    "roles": {"readers": "viewer"},
                }
            ]
            env = service_env(
                url,
                {
                    "GPUINV_OIDC_ISSUERS": json.dumps(issuers),
                    "GPUINV_TOKEN_CACHE_SECONDS": cache_seconds,
                },
            )
            with running_service(url, workdir, env=env) as service:
                one_run(service.base_url, tokens, 50)  # warm-up: keys fetched, caches filled
                results = [one_run(service.base_url, tokens, requests) for _ in range(runs)]
    print(f"GPUINV_TOKEN_CACHE_SECONDS={cache_seconds}: {requests} requests per kind, {runs} runs")
    medians = {}
    for kind in tokens:
        p50 = statistics.median(percentile(r[kind], 50) * 1000 for r in results)
        p99 = statistics.median(percentile(r[kind], 99) * 1000 for r in results)
        medians[kind] = (p50, p99)
        print(f"  {kind:8} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
    extra50 = medians["jwt"][0] - medians["service"][0]
    extra99 = medians["jwt"][1] - medians["service"][1]
    print(f"  JWT extra: p50 {extra50:+.3f} ms   p99 {extra99:+.3f} ms   (budget +0.2 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="per kind and run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for cache_seconds in ("5", "0"):
        measure(cache_seconds, args.requests, args.runs)


if __name__ == "__main__":
    main()
