"""Settings from the environment, checked once at start-up with clear messages."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from api.domain.identity import IssuerConfig, IssuerConfigError, parse_issuers


@dataclass(frozen=True)
class Provider:
    """Another inventory service: its name in views, its base URL, a token it accepts."""

    name: str
    url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///gpuinv.db"
    cors_origins: tuple[str, ...] = ()
    max_query_depth: int = 12
    max_query_tokens: int = 4000
    max_query_aliases: int = 30
    max_page_size: int = 500
    # Request bodies are counted as they arrive and refused (413) past these limits. With a
    # valid token: room for a 100,000-device importInventory in one request (145 MiB of
    # demo-shaped JSON). Without one only introspection answers, which needs a few KiB.
    max_body_bytes: int = 256 * 1024 * 1024
    max_anonymous_body_bytes: int = 64 * 1024
    graphiql: bool = True
    lease_sweep_seconds: float = 15.0
    # How long a process trusts a token it has read (a revocation elsewhere is seen within
    # this bound; 0: read the token on every request), and how many GraphQL operations run
    # at once, each in a worker thread so that none holds the event loop.
    token_cache_seconds: float = 5.0
    graphql_threads: int = 8
    # NetBox sync (DESIGN.md "NetBox sync"): where NetBox is, the webhook secret and the
    # mapping file; the service's webhook and `gpuinv sync` both read them from here.
    netbox_url: str = ""
    netbox_token: str = ""
    netbox_webhook_secret: str = ""
    sync_mapping_file: str = ""
    # Operations: /healthz, /readyz and /metrics on their own HOST:PORT (then /metrics is
    # not served on the API's address); log lines as json, text, or auto (text on a tty).
    ops_address: str = ""
    log_format: str = "auto"
    log_level: str = "info"
    # Other gpu-inventory services whose capacity fleetCapacity adds up (GPUINV_PROVIDERS:
    # a JSON array of {"name", "url", "token"}, or @/path/to/such.json).
    providers: tuple[Provider, ...] = ()
    # OpenID Connect issuers whose tokens the API accepts (DESIGN.md "Identity";
    # GPUINV_OIDC_ISSUERS: a JSON array of issuer objects, or @/path/to/such.json).
    oidc_issuers: tuple[IssuerConfig, ...] = ()
    # Events out (DESIGN.md "Events"). GPUINV_SECRET_KEY: the Fernet key webhook secrets are
    # encrypted with (several, comma-separated, for rotation: the first encrypts, any
    # decrypts); without it no webhook can be created and no delivery signed, so this
    # process does not dispatch either. Loopback and private targets only when allowed.
    secret_key: str = field(default="", repr=False)
    webhook_allow_private: bool = False
    # The dispatcher (api/dispatcher.py): one leader among the replicas that run it; how
    # often an idle one looks for work; each POST's whole time; POSTs at once; the longest
    # wait between retries; when a delivery is given up (hours after its event); how long
    # finished deliveries and their events are kept (days).
    webhook_dispatch: bool = True
    webhook_poll_seconds: float = 1.0
    webhook_timeout_seconds: float = 10.0
    webhook_concurrency: int = 16
    webhook_retry_cap_seconds: float = 600.0
    webhook_max_age_hours: int = 72
    webhook_retention_days: int = 14
    # Provision requests (DESIGN.md "Priority, preemption, provision requests"): a
    # preempted allocation's notice; how long a request that does not fit lets later ones
    # go ahead before it holds the queue; how long a request may wait for approval (hours);
    # how often the queue's leader looks for work.
    preemption_grace_seconds: float = 300.0
    queue_backfill_seconds: float = 600.0
    request_approval_hours: int = 168
    queue_poll_seconds: float = 1.0

    @classmethod
    def database_only(cls, environ: dict[str, str] | None = None) -> Settings:
        """GPUINV_DATABASE_URL alone, the rest left at defaults: for commands that read no
        other setting, so that one meant for the server (an issuers file not yet written,
        as `gpuinv tenant create --issuers-file` is about to write) cannot stop them."""
        env = os.environ if environ is None else environ
        return cls(database_url=env.get("GPUINV_DATABASE_URL") or cls.database_url)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        origins = tuple(
            o.strip() for o in env.get("GPUINV_CORS_ORIGINS", "").split(",") if o.strip()
        )
        return cls(
            database_url=env.get("GPUINV_DATABASE_URL") or cls.database_url,
            cors_origins=origins,
            max_query_depth=_int(env, "GPUINV_MAX_QUERY_DEPTH", cls.max_query_depth),
            max_query_tokens=_int(env, "GPUINV_MAX_QUERY_TOKENS", cls.max_query_tokens),
            max_query_aliases=_int(env, "GPUINV_MAX_QUERY_ALIASES", cls.max_query_aliases),
            max_page_size=_int(env, "GPUINV_MAX_PAGE_SIZE", cls.max_page_size),
            max_body_bytes=_int(env, "GPUINV_MAX_BODY_BYTES", cls.max_body_bytes),
            max_anonymous_body_bytes=_int(
                env, "GPUINV_MAX_ANONYMOUS_BODY_BYTES", cls.max_anonymous_body_bytes
            ),
            graphiql=env.get("GPUINV_GRAPHIQL", "1").lower() not in ("0", "false", "no"),
            lease_sweep_seconds=_int(env, "GPUINV_LEASE_SWEEP_SECONDS", 15),
            token_cache_seconds=_seconds(
                env, "GPUINV_TOKEN_CACHE_SECONDS", cls.token_cache_seconds
            ),
            graphql_threads=_int(env, "GPUINV_GRAPHQL_THREADS", cls.graphql_threads),
            netbox_url=env.get("NETBOX_URL", ""),
            netbox_token=env.get("NETBOX_TOKEN", ""),
            netbox_webhook_secret=env.get("GPUINV_NETBOX_WEBHOOK_SECRET", ""),
            sync_mapping_file=env.get("GPUINV_SYNC_MAPPING", ""),
            ops_address=_address(env, "GPUINV_OPS_ADDRESS"),
            log_format=_choice(env, "GPUINV_LOG_FORMAT", ("auto", "json", "text"), "auto"),
            providers=_providers(env.get("GPUINV_PROVIDERS", "")),
            oidc_issuers=_oidc_issuers(env.get("GPUINV_OIDC_ISSUERS", "")),
            log_level=_choice(
                env, "GPUINV_LOG_LEVEL", ("critical", "error", "warning", "info", "debug"), "info"
            ),
            secret_key=_fernet_keys(env.get("GPUINV_SECRET_KEY", "")),
            webhook_allow_private=_flag(env, "GPUINV_WEBHOOK_ALLOW_PRIVATE", False),
            webhook_dispatch=_flag(env, "GPUINV_WEBHOOK_DISPATCH", True),
            webhook_poll_seconds=_seconds(
                env, "GPUINV_WEBHOOK_POLL_SECONDS", cls.webhook_poll_seconds
            ),
            webhook_timeout_seconds=_seconds(
                env, "GPUINV_WEBHOOK_TIMEOUT_SECONDS", cls.webhook_timeout_seconds
            ),
            webhook_concurrency=_int(env, "GPUINV_WEBHOOK_CONCURRENCY", cls.webhook_concurrency),
            webhook_retry_cap_seconds=_seconds(
                env, "GPUINV_WEBHOOK_RETRY_CAP_SECONDS", cls.webhook_retry_cap_seconds
            ),
            webhook_max_age_hours=_int(env, "GPUINV_WEBHOOK_MAX_AGE_HOURS", 72),
            webhook_retention_days=_int(env, "GPUINV_WEBHOOK_RETENTION_DAYS", 14),
            preemption_grace_seconds=_seconds(
                env, "GPUINV_PREEMPTION_GRACE_SECONDS", cls.preemption_grace_seconds
            ),
            queue_backfill_seconds=_seconds(
                env, "GPUINV_QUEUE_BACKFILL_SECONDS", cls.queue_backfill_seconds
            ),
            request_approval_hours=_int(
                env, "GPUINV_REQUEST_APPROVAL_HOURS", cls.request_approval_hours
            ),
            queue_poll_seconds=_seconds(env, "GPUINV_QUEUE_POLL_SECONDS", cls.queue_poll_seconds),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name}: must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 3600:
        raise SystemExit(f"{name}: must be from 0 to 3600 seconds, got {raw}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}: must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name}: must be positive, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("1", "true", "yes", "0", "false", "no"):
        raise SystemExit(f"{name}: must be 1 or 0 (true/false, yes/no), got {raw!r}")
    return raw in ("1", "true", "yes")


def _fernet_keys(raw: str) -> str:
    """GPUINV_SECRET_KEY: one Fernet key or several, comma-separated; refused at start
    when one is not a key, with how to make one."""
    from cryptography.fernet import Fernet

    keys = [k.strip() for k in raw.split(",") if k.strip()]
    for number, key in enumerate(keys):
        try:
            Fernet(key)
        except ValueError:
            which = f"key {number + 1} of {len(keys)}" if len(keys) > 1 else "the key"
            raise SystemExit(
                f"GPUINV_SECRET_KEY: {which} is not a Fernet key (32 url-safe base64-encoded "
                "bytes); make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None
    return ",".join(keys)


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in allowed:
        raise SystemExit(f"{name}: must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def _address(env: Mapping[str, str], name: str) -> str:
    """HOST:PORT, or empty."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return ""
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"{name}: must be HOST:PORT (e.g. 0.0.0.0:9100), got {raw!r}")
    return raw


def _json_setting(name: str, raw: str) -> tuple[object, str]:
    """A setting holding JSON, or @FILE holding it: the value and how messages name it."""
    where = name
    if raw.startswith("@"):
        where = raw[1:]
        try:
            raw = Path(where).read_text()
        except OSError as exc:
            raise SystemExit(f"{name}: cannot read {where}: {exc.strerror}") from None
    try:
        return json.loads(raw), where
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{where}: not JSON ({exc.msg} at {exc.pos})") from None


def _oidc_issuers(raw: str) -> tuple[IssuerConfig, ...]:
    """GPUINV_OIDC_ISSUERS: refused at start, naming the entry and the field."""
    raw = raw.strip()
    if not raw:
        return ()
    entries, where = _json_setting("GPUINV_OIDC_ISSUERS", raw)
    try:
        return parse_issuers(entries, where)
    except IssuerConfigError as exc:
        raise SystemExit(str(exc)) from None


_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _providers(raw: str) -> tuple[Provider, ...]:
    """GPUINV_PROVIDERS: a JSON array, or @FILE holding one. Refused at start, by entry."""
    raw = raw.strip()
    if not raw:
        return ()
    entries, where = _json_setting("GPUINV_PROVIDERS", raw)
    if not isinstance(entries, list):
        raise SystemExit(f"{where}: expected a JSON array of {{name, url, token}}")
    found: list[Provider] = []
    for number, entry in enumerate(entries):
        label = f"{where}[{number}]"
        if not isinstance(entry, dict):
            raise SystemExit(f"{label}: expected an object with name, url and token")
        name, url, token = (entry.get(k) for k in ("name", "url", "token"))
        if not isinstance(name, str) or not _PROVIDER_NAME.match(name) or name == "local":
            raise SystemExit(
                f"{label}.name: lower-case letters, digits and dashes, not 'local'; got {name!r}"
            )
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise SystemExit(f"{label}.url: an http(s) base URL, got {url!r}")
        if not isinstance(token, str) or not token:
            raise SystemExit(f"{label}.token: a bearer token the provider accepts")
        if any(p.name == name for p in found):
            raise SystemExit(f"{label}.name: {name!r} is given twice")
        found.append(Provider(name, url.rstrip("/").removesuffix("/graphql"), token))
    return tuple(found)
