"""Structured logs and the request id.

Every request gets an id: the caller's X-Request-Id if it sent one (so a pipeline can
follow its own call through), else a new one. It is echoed in the response, written on
every log line made while the request runs, stored with the audit events the request
causes, and names one access-log line per request with its operation and duration.
Logs are JSON lines (python-json-logger) for collectors, or plain text for a terminal.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import REQUEST_SECONDS

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger("gpuinv.access")

# Routes whose names are metric labels as they are; anything else (scanners, typos) is
# "other", so that a label's values stay few.
KNOWN_ROUTES = ("/graphql", "/healthz", "/readyz", "/metrics", "/hooks/netbox", "/")
# A caller's id is kept if it is a sane token; anything else is replaced, not trusted.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def operation_of(scope: Scope) -> str:
    """What the metrics and the access log call this request: the GraphQL root field
    that the schema extension recorded, else the route."""
    named: str | None = scope.get("state", {}).get("operation")
    if named:
        return named
    path = scope.get("path", "")
    return path if path in KNOWN_ROUTES else "other"


class RequestContext:
    """ASGI middleware: the request id, the access-log line and the latency histogram."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status, answered = 500, False  # 500: uvicorn's answer if the app raises

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
            if status == 500 and not answered:
                status = 499  # nginx's "client closed request": nobody left to answer
        finally:
            seconds = time.perf_counter() - started
            operation = operation_of(scope)
            REQUEST_SECONDS.labels(operation).observe(seconds)
            access_log.info(
                "%s %s %d %.1f ms",
                scope.get("method"),
                scope.get("path"),
                status,
                seconds * 1000,
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "operation": operation,
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
            request_id_var.reset(token)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Root logging for the service: JSON lines (``json``), text (``text``), or ``auto``
    (text on a terminal, JSON otherwise). uvicorn's own access log is replaced by ours."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{request_id}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
