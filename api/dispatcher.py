"""The webhook dispatcher (DESIGN.md "Events"): sends the outbox's events to the webhooks
that want them, at least once, in order per subject.

Each round, in every process that runs one (``gpuinv serve`` starts it when
GPUINV_SECRET_KEY is set):

1. Anything to do? Events not yet fanned out, or deliveries due: two index reads, no write,
   so idle replicas cost the database almost nothing.
2. Lead. One dispatcher sends at a time: a lease in sync_state (``syncState(source:
   "webhooks")`` shows who holds it), taken when it has lapsed and renewed while working.
3. Fan out the new events: one delivery per webhook that wants each (its tenant's, or the
   platform's; of a type it subscribed to).
4. Claim the deliveries due, each the earliest pending one of its subject to its webhook:
   a later event of an allocation is never sent while an earlier one is pending. A claim
   is a conditional UPDATE, so even two leaders (a lease that lapsed mid-round) never send
   one delivery twice in a round.
5. POST them, ``concurrency`` at once, each bounded by ``timeout`` as a whole; redirects
   are not followed; the address is resolved, checked (no loopback or private address
   unless allowed) and connected to as checked, so a name cannot be re-pointed between
   the check and the request.
6. Record every attempt. A 2xx delivers; anything else is retried after 5 s, 10 s, 20 s …
   doubling up to ``retry_cap`` (each wait shortened by up to a quarter, the same for a
   delivery every time, so that deliveries that failed together come back spread out),
   until ``max_age`` after the event, when the delivery is given up as failed.

Time is read from ``clock``, which tests replace: an hour of retries is a loop, not a wait.
An acknowledgement lost (a receiver that answers after the timeout, a crash between the
POST and its record) means the event is sent again: receivers deduplicate on its ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import httpx
from cryptography.fernet import InvalidToken
from sqlalchemy.orm import Session, sessionmaker

from api import __version__
from api.db import webhook as webhook_db
from api.db.base import utcnow
from api.db.leader_lease import give_up_lead, take_lead
from api.domain.events import SIGNATURE_HEADER, cloud_event, signature
from api.settings import Settings

log = logging.getLogger("gpuinv.webhooks")
LEASE = "webhooks"  # the dispatcher's row in sync_state (syncState(source: "webhooks"))

MAX_LOG = 20  # attempts kept per delivery (the latest)
ERROR_CHARS = 300  # of a receiver's answer, kept with a failed attempt
MAX_ANSWER = 64 * 1024  # bytes of an answer read at most


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()


@dataclass(frozen=True)
class Policy:
    timeout: float = 10.0  # seconds for one POST, connection to answer
    concurrency: int = 16  # POSTs at once
    batch: int = 64  # deliveries claimed per round
    first_retry: float = 5.0
    retry_cap: float = 600.0
    max_age: timedelta = timedelta(hours=72)  # after its event, a delivery is given up
    retention: timedelta = timedelta(days=14)  # finished deliveries and their events
    lease: timedelta = timedelta(seconds=30)
    poll: float = 1.0  # seconds between looks while idle
    allow_private: bool = False

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            timeout=max(0.1, settings.webhook_timeout_seconds),
            concurrency=settings.webhook_concurrency,
            batch=max(16, settings.webhook_concurrency * 4),
            retry_cap=max(1.0, settings.webhook_retry_cap_seconds),
            max_age=timedelta(hours=settings.webhook_max_age_hours),
            retention=timedelta(days=settings.webhook_retention_days),
            lease=timedelta(seconds=max(30.0, 4 * settings.webhook_timeout_seconds)),
            poll=max(0.01, settings.webhook_poll_seconds),
            allow_private=settings.webhook_allow_private,
        )

    def retry_delay(self, failures: int, delivery_id: int) -> float:
        """Seconds to wait after ``failures`` failed attempts of a delivery."""
        base = min(self.retry_cap, self.first_retry * 2.0 ** min(failures - 1, 40))
        shortened = (delivery_id * 2654435761 % 1024) / 4096  # 0 to 1/4, per delivery
        return base * (1 - shortened)


@dataclass
class Round:
    """What one round did."""

    leading: bool = False
    fanned_out: int = 0  # events
    sent: int = 0  # attempts made
    delivered: int = 0
    failed: int = 0  # attempts that failed and will be retried
    gave_up: int = 0  # deliveries given up

    @property
    def busy(self) -> bool:
        return bool(self.fanned_out or self.sent)


@dataclass
class Dispatcher:
    sessions: sessionmaker[Session]
    secret_key: str
    policy: Policy = field(default_factory=Policy)
    clock: Clock = field(default_factory=SystemClock)
    worker: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    )
    _clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None
    _pruned_at: datetime | None = None

    @classmethod
    def of(cls, sessions: sessionmaker[Session], settings: Settings) -> Dispatcher:
        return cls(sessions, settings.secret_key, Policy.of(settings))

    async def run(self) -> None:
        """Rounds until cancelled: at once after a busy round, else after ``poll``."""
        log.info("webhook dispatcher %s started", self.worker)
        try:
            while True:
                try:
                    busy = (await self.run_once()).busy
                except Exception:  # the database away for a moment: the next round retries
                    log.exception("a webhook dispatch round failed")
                    busy = False
                if not busy:
                    await asyncio.sleep(self.policy.poll)
        finally:
            await self.close()

    async def run_once(self) -> Round:
        sessions, now = self.sessions, self.clock.now()
        if not await asyncio.to_thread(webhook_db.has_work, sessions, now):
            return Round()
        lease = self.policy.lease
        if not await asyncio.to_thread(take_lead, sessions, LEASE, self.worker, lease, now):
            return Round()
        done = Round(leading=True)
        done.fanned_out = await asyncio.to_thread(webhook_db.fan_out, sessions, now)
        if self._pruned_at is None or now - self._pruned_at > timedelta(hours=1):
            kept = self.policy.retention
            pruned = await asyncio.to_thread(webhook_db.prune, sessions, now - kept)
            self._pruned_at = now
            if pruned:
                log.info("pruned %d finished event(s) older than %s", pruned, kept)
        # Claimed for longer than a POST can take: a dispatcher that dies meanwhile leaves
        # its claims due again when this runs out.
        until = now + timedelta(seconds=2 * self.policy.timeout + 30)
        due = await asyncio.to_thread(webhook_db.claim_due, sessions, now, until, self.policy.batch)
        if not due:
            return done
        attempts = await asyncio.gather(*(self._attempt(d) for d in due))
        await asyncio.to_thread(webhook_db.record_attempts, sessions, list(attempts))
        done.sent = len(attempts)
        for attempt in attempts:
            if attempt.status == webhook_db.DELIVERED:
                done.delivered += 1
            elif attempt.status == webhook_db.FAILED:
                done.gave_up += 1
            else:
                done.failed += 1
        return done

    async def close(self) -> None:
        """Let the lease go (another replica takes over at once) and close connections."""
        with contextlib.suppress(Exception):
            await asyncio.to_thread(give_up_lead, self.sessions, LEASE, self.worker)
        clients, self._clients, self._slots = list(self._clients.values()), {}, None
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()

    # -- one attempt ------------------------------------------------------------------------

    async def _attempt(self, due: webhook_db.Due) -> webhook_db.Attempt:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.policy.concurrency)
        async with self._slots:
            at, started = self.clock.now(), time.monotonic()
            try:
                async with asyncio.timeout(self.policy.timeout):
                    code, error = await self._post(due)
            except TimeoutError:
                code, error = None, f"no answer within {self.policy.timeout:g} s"
            seconds = time.monotonic() - started
        return self._outcome(due, at, code, error, seconds)

    def _outcome(
        self, due: webhook_db.Due, at: datetime, code: int | None, error: str | None, took: float
    ) -> webhook_db.Attempt:
        entry = {"at": _iso(at), "responseCode": code, "error": error, "ms": round(took * 1000)}
        attempts, entries = due.attempts + 1, [*due.log, entry][-MAX_LOG:]
        if error is None:
            return webhook_db.Attempt(
                due.id, webhook_db.DELIVERED, attempts, at, at, code, None, entries
            )
        retry = at + timedelta(seconds=self.policy.retry_delay(attempts, due.id))
        if retry - due.time <= self.policy.max_age:
            log.debug("delivery %d: attempt %d failed: %s", due.id, attempts, error)
            return webhook_db.Attempt(
                due.id, webhook_db.PENDING, attempts, at, retry, code, error, entries
            )
        log.warning("delivery %d of event %s given up after %d attempts: %s",
                    due.id, due.event_id, attempts, error)  # fmt: skip
        given_up = f"given up after {attempts} attempts over {self.policy.max_age}: {error}"
        return webhook_db.Attempt(
            due.id, webhook_db.FAILED, attempts, at, at, code, given_up, entries
        )

    async def _post(self, due: webhook_db.Due) -> tuple[int | None, str | None]:
        """POST one event; (HTTP status, None) when delivered, else (status, why not)."""
        url = httpx.URL(due.url)
        try:
            secret = webhook_db.decrypt(self.secret_key, due.secret)
        except (InvalidToken, ValueError):
            return None, (
                "the secret cannot be decrypted with GPUINV_SECRET_KEY (was the key replaced? "
                "list the old key after the new one, comma-separated)"
            )
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:  # an address needs no look-up
            addresses: list[webhook_db.Address] = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = await asyncio.to_thread(webhook_db.resolve, host, port)
        if not addresses:
            return None, f"cannot resolve {host}"
        problem = webhook_db.target_problem(host, addresses, self.policy.allow_private)
        if problem is not None:
            return None, f"refused: {problem} ({webhook_db.ALLOW_PRIVATE_HINT})"
        body = json.dumps(
            cloud_event(due.event_id, due.type, due.subject, due.time, due.data),
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        ).encode()
        headers = {
            "Host": url.netloc.decode("ascii"),  # the name, though we connect to the address
            "Content-Type": "application/cloudevents+json; charset=utf-8",
            "User-Agent": f"gpu-inventory-webhooks/{__version__}",
            SIGNATURE_HEADER: signature(secret, body),
            "X-Gpuinv-Delivery": str(due.id),
        }
        # Connect to the address just checked; TLS still names and verifies the host.
        extensions = {"sni_hostname": host} if url.scheme == "https" else {}
        target = url.copy_with(host=str(addresses[0]))
        try:
            async with self._client(url).stream(
                "POST", target, content=body, headers=headers, extensions=extensions
            ) as response:
                head = await _head(response)  # read, so that the connection can be reused
                if 200 <= response.status_code < 300:
                    return response.status_code, None
        except httpx.TimeoutException:
            return None, f"no answer within {self.policy.timeout:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        where = f" (to {response.headers.get('location', '?')[:200]}: not followed)"
        moved = where if 300 <= response.status_code < 400 else ""
        return response.status_code, f"HTTP {response.status_code}{moved}: {head}"

    def _client(self, url: httpx.URL) -> httpx.AsyncClient:
        """One connection pool per target host: a pooled connection is reused only for
        the host whose certificate it verified."""
        key = f"{url.scheme}://{url.netloc.decode('ascii')}"
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = httpx.AsyncClient(
                timeout=self.policy.timeout,
                follow_redirects=False,
                trust_env=False,  # no proxy from the environment: we connect where we checked
                limits=httpx.Limits(max_connections=self.policy.concurrency),
            )
        return client


async def _head(response: httpx.Response) -> str:
    """The start of a receiver's answer, for the delivery log. A short answer is read
    whole (its connection goes back to the pool); a long one is cut off."""
    read = b""
    async for chunk in response.aiter_bytes():
        read += chunk
        if len(read) > MAX_ANSWER:
            break
    return read[:ERROR_CHARS].decode(errors="replace").strip() or "(no body)"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
