"""Request body limits, counted as the bytes arrive.

A Content-Length header is only a claim, and a chunked body has none: the limit is
enforced on the bytes themselves, by wrapping the ASGI ``receive``. A body that passes the
limit stops being read and is answered with a 413 (code BAD_INPUT) naming the limit and
the setting that raises it; uvicorn discards the rest of it, so the keep-alive connection
serves the next request.

The middleware holds the largest limit (GPUINV_MAX_BODY_BYTES). A route that knows more
about the request lowers it with ``lower_body_limit`` before it reads the body: the GraphQL
view after authentication (a request without a valid token can only run introspection),
the NetBox webhook always (its signature is checked only once the body is read).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.domain.errors import BAD_INPUT

_SCOPE_KEY = "gpuinv.body_limit"


@dataclass
class BodyLimit:
    """The most bytes this request's body may have, and what sets that number."""

    max_bytes: int
    setting: str

    def message(self, seen: int | None) -> str:
        size = f"of {seen} bytes " if seen is not None else ""
        return f"request body {size}is over the limit of {self.max_bytes} bytes ({self.setting})"


class BodyTooLarge(Exception):
    def __init__(self, limit: BodyLimit, seen: int | None):
        super().__init__(limit.message(seen))


def lower_body_limit(scope: Scope, max_bytes: int, setting: str) -> None:
    """Let this request's body have at most ``max_bytes`` (never raises the limit).
    Call before the body is read; without the middleware (a bare app) it does nothing."""
    limit: BodyLimit | None = scope.get(_SCOPE_KEY)
    if limit is not None and max_bytes < limit.max_bytes:
        limit.max_bytes, limit.setting = max_bytes, setting


class BodySizeLimit:
    """ASGI middleware: a 413 for a body over the limit, announced or not."""

    def __init__(self, app: ASGIApp, max_bytes: int, setting: str = "GPUINV_MAX_BODY_BYTES"):
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.app, self.max_bytes, self.setting = app, max_bytes, setting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = BodyLimit(self.max_bytes, self.setting)
        scope[_SCOPE_KEY] = limit
        announced = _content_length(scope)
        if announced is not None and announced > limit.max_bytes:
            await _refuse(BodyTooLarge(limit, announced), scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            # A route may have lowered the limit since the request came in.
            if announced is not None and announced > limit.max_bytes:
                raise BodyTooLarge(limit, announced)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    raise BodyTooLarge(limit, None)  # chunked: the full size is unknown
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as refusal:
            if started:  # too late for a 413; nothing reads a body after answering
                raise
            await _refuse(refusal, scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


async def _refuse(refusal: BodyTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
    error = {"message": str(refusal), "extensions": {"code": BAD_INPUT}}
    await JSONResponse({"data": None, "errors": [error]}, status_code=413)(scope, receive, send)
