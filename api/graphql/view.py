"""The HTTP face of the schema: authentication, error codes, no tracebacks to clients.

Answers: a GraphQL result or GraphQL errors with HTTP 200 (every error with a stable
``extensions.code``); a request that is not a GraphQL request at all (not JSON, not an
object, not Unicode…) with HTTP 400 and ``{"data": null, "errors": [...]}``, the
GraphQL-over-HTTP convention; a body over its limit with 413 (api/body_limit.py). A
database that cannot be reached is a GraphQL error with code UNAVAILABLE (HTTP 200, like
every GraphQL error here: clients read the code, and a retry is safe).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLFormattedError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    parse,
)
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types import ExecutionResult

from api import graphiql, oidc
from api.body_limit import BodyTooLarge, lower_body_limit
from api.db import unavailable
from api.db.candidates import LiveIndex
from api.db.token import TokenCache, look_up
from api.domain.access import Principal
from api.domain.errors import (
    FORBIDDEN,
    GRAPHQL_VALIDATION_FAILED,
    INTERNAL_SERVER_ERROR,
    QUERY_TOO_COMPLEX,
    UNAVAILABLE,
    DomainError,
)
from api.graphql.context import Context, watch_commits
from api.graphql.request import (
    PARSE_FAILED,
    RequestRefused,
    decode_json,
    graphql_request,
)
from api.settings import Settings

log = logging.getLogger("gpuinv.graphql")

VALIDATION_FAILED = GRAPHQL_VALIDATION_FAILED
TOO_COMPLEX = QUERY_TOO_COMPLEX
INTERNAL = INTERNAL_SERVER_ERROR

ANONYMOUS_LIMIT = "GPUINV_MAX_ANONYMOUS_BODY_BYTES, for requests without a valid token"

# How strawberry's limiters word their refusals (tests pin these, so a change shows up).
# graphql-core has two limits of its own: a depth limit on introspection (which the
# strawberry depth limiter skips) and a work budget for overlapping fields, whose refusal
# reads "Validation aborted.".
_LIMIT_MARKERS = (
    "exceeds maximum operation depth",
    "aliases found",
    "more than",
    "Maximum introspection depth exceeded",
    "Validation aborted",
)


class GraphQLView(GraphQL[Context, None]):
    def __init__(
        self,
        schema: Any,
        engine: Engine,
        sessions: sessionmaker[Session],
        settings: Settings,
        live_index: LiveIndex,
    ):
        """``sessions``: the app's, on ``engine``; the engine itself is for functions that
        own their transactions (matchDevice)."""
        super().__init__(schema, graphql_ide="graphiql" if settings.graphiql else None)
        self.engine = engine
        self.sessions = sessions
        watch_commits(engine)
        self.settings = settings
        self.live_index = live_index
        self.tokens = TokenCache(settings.token_cache_seconds)
        self.oidc = oidc.OidcVerifier(settings.oidc_issuers) if settings.oidc_issuers else None
        # Resolvers are synchronous database work: run on the event loop, one import of
        # 20,000 devices held /healthz for seconds. Operations run here instead, in threads
        # of their own (not the loop's default pool, which /readyz and /metrics use).
        self.workers = ThreadPoolExecutor(
            settings.graphql_threads, thread_name_prefix="gpuinv-graphql"
        )

    async def in_worker[T, *Args](self, function: Callable[[*Args], T], *args: *Args) -> T:
        """``function(*args)`` in a worker thread, with this request's context variables
        (its request id for the logs)."""
        call = functools.partial(contextvars.copy_context().run, function, *args)
        return await asyncio.get_running_loop().run_in_executor(self.workers, call)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive=receive)
        # api/logs.RequestContext names every request; a bare view (no middleware) makes one
        request_id = scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        try:
            response = await self._respond(request, request_id)
        except BodyTooLarge:
            raise  # api/body_limit answers it, with a 413
        except ClientDisconnect:
            log.info("the client went away before its request was read")
            return  # nobody to answer
        except Exception:
            # A bug: the client gets JSON, a code and the request id, never a traceback.
            log.exception("unexpected error answering a GraphQL request")
            response = _error_response(
                "internal error; the server log has the details", INTERNAL, 500
            )
        response.headers["X-Request-Id"] = request_id
        await response(scope, receive, send)

    async def _respond(self, request: Request, request_id: str) -> Response:
        try:
            principal, problem = await self._authenticate(request)
        except DomainError as refusal:
            # A verified OpenID Connect token this service grants nothing: refused whole,
            # before the body is read (an unverified one is UNAUTHENTICATED, as below).
            if refusal.code != FORBIDDEN:
                raise
            return _error_response(refusal.message, FORBIDDEN, 200)
        except SQLAlchemyError as exc:
            if not unavailable.database_unavailable(exc):
                raise
            log.warning("token lookup failed twice: %s", unavailable.first_line(exc))
            return _error_response(unavailable.MESSAGE, UNAVAILABLE, 200)
        if principal is None:
            # Without a valid token only introspection answers: a few KiB at most.
            max_bytes = self.settings.max_anonymous_body_bytes
            lower_body_limit(request.scope, max_bytes, ANONYMOUS_LIMIT)
        context = Context(
            request=request,
            settings=self.settings,
            engine=self.engine,
            sessions=self.sessions,
            principal=replace(principal, request_id=request_id) if principal else None,
            auth_problem=problem,
            request_id=request_id,
            live_index=self.live_index,
        )
        context.run_here()
        try:
            return await self.run(request, context=context)
        except RequestRefused as refused:
            return _error_response(refused.reason, refused.code, refused.status_code)
        except HTTPException as exc:  # strawberry's own refusals (a mutation over GET…)
            return _error_response(exc.reason, PARSE_FAILED, exc.status_code)
        finally:
            context.close()  # never raises: the answer above stands

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL with its scripts from the service (api/graphiql), not strawberry's page,
        which loads them from a public CDN: an air-gapped site would see "Loading..." only."""
        return HTMLResponse(
            graphiql.page_html(),
            headers={"Content-Security-Policy": graphiql.CONTENT_SECURITY_POLICY},
        )

    async def _authenticate(self, request: Request) -> tuple[Principal | None, str | None]:
        header = request.headers.get("authorization", "")
        if not header:
            return None, None
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            return None, "Authorization header must be 'Bearer <token>'"
        cached = self.tokens.get(secret)
        if cached is not None:
            return cached, None
        return await self.in_worker(self._read_token, secret)

    def _read_token(self, secret: str) -> tuple[Principal | None, str | None]:
        """A service token by its hash; a JWT (which no service token resembles: they are
        ``gpuinv_`` and base64url, without dots) or, with an "opaque" issuer configured, an
        unknown token, by the OpenID Connect verifier. Runs in a worker thread: the
        verifier may fetch an issuer's keys."""
        if self.oidc is not None and oidc.looks_like_jwt(secret):
            return self._read_oidc_token(secret)
        try:
            principal, problem, expires_at = self._look_up(secret)
        except SQLAlchemyError as exc:
            if not unavailable.database_unavailable(exc):
                raise
            # A read, so safe to repeat: the failed statement invalidated the pool's
            # connections, and the second try gets a fresh one.
            log.info("token lookup lost its connection (%s); retrying", unavailable.first_line(exc))
            principal, problem, expires_at = self._look_up(secret)
        if principal is None and self.oidc is not None and self.oidc.asks_about_opaque_tokens:
            return self._read_oidc_token(secret)
        if principal is not None:
            self.tokens.put(secret, principal, expires_at)
        return principal, problem

    def _read_oidc_token(self, secret: str) -> tuple[Principal | None, str | None]:
        """Raises FORBIDDEN for a verified token that maps to nothing here."""
        assert self.oidc is not None
        try:
            principal, expires_at = oidc.authenticate(self.oidc, self.sessions, secret)
        except DomainError as refusal:
            if refusal.code == FORBIDDEN:
                raise
            return None, refusal.message
        # Cached like a service token: at most token_cache_seconds, never past its exp.
        self.tokens.put(secret, principal, expires_at)
        return principal, None

    def _look_up(self, secret: str) -> tuple[Principal | None, str | None, Any]:
        with self.sessions() as session:
            return look_up(session, secret)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData:
        """The request's operation, from the query string (GET) or a JSON body (POST);
        api/graphql/request.py decodes and checks it. No batches, no file uploads."""
        if request.method == "GET":
            params = dict(request.query_params)
            for name in ("variables", "extensions"):
                if value := params.get(name):
                    params[name] = decode_json(value, f"the query string's {name}")
            return graphql_request(params, "the query string")
        content_type = (request.content_type or "").partition(";")[0].strip().lower()
        if "application/json" not in content_type:
            raise RequestRefused(
                PARSE_FAILED,
                f"Unsupported content type {content_type or '(none)'!r}: send a JSON body as "
                "application/json, or the query in a GET's query string",
            )
        return graphql_request(
            decode_json(await request.get_body(), "request body"), "request body"
        )

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        def execute() -> Awaitable[ExecutionResult]:
            operation = super(GraphQLView, self).execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
            return self.in_worker(_run_in_thread_loop, operation)

        try:
            result = await execute()
            if _lost_its_connection_before_writing(result, context):
                # Its pooled connection had died (a failover, a killed backend) and nothing
                # was committed: once more on a fresh one, which the pool now gives. Before
                # tokens were cached, the token lookup met the dead connection instead.
                log.info("an operation lost its connection before writing; running it again")
                context.start_over()
                result = await execute()
            return result
        except HTTPException as exc:
            if not isinstance(exc.__cause__, CannotGetOperationTypeError):
                raise
            # An operationName that names no operation of the document: a validation
            # error (the spec's GetOperation), answered like one.
            message = _no_such_operation(request_data, self.settings.max_query_tokens)
            error = GraphQLError(message, extensions={"code": VALIDATION_FAILED})
            return ExecutionResult(data=None, errors=[error])

    def encode_json(self, data: object) -> bytes:
        """The response body. orjson: a claim's answer carries whole device documents, and
        json.dumps spent more time on them than GraphQL's own execution did. orjson takes
        integers of 64 bits at most; a larger one (a client may send any JSON number in
        ``variables``, and get it back) falls back to the standard library."""
        try:
            return orjson.dumps(data)
        except TypeError:
            return json.dumps(data).encode()

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            data["errors"] = [_format_error(e) for e in result.errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data


def _lost_its_connection_before_writing(result: ExecutionResult, context: Context) -> bool:
    return (
        bool(result.errors)
        and not context.committing
        and any(code_of(error) == UNAVAILABLE for error in result.errors or ())
    )


_thread_state = threading.local()


def _run_in_thread_loop[T](operation: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on this worker thread's own event loop (made once per
    thread): the operation's async parts (DataLoaders) then run beside its database work,
    away from the loop that serves every other request."""
    loop: asyncio.AbstractEventLoop | None = getattr(_thread_state, "loop", None)
    if loop is None:
        loop = _thread_state.loop = asyncio.new_event_loop()
    return loop.run_until_complete(operation)


def code_of(error: GraphQLError) -> str | None:
    """The stable code of an error the API means to give; None for a bug."""
    original = error.original_error
    if isinstance(original, DomainError):
        return original.code
    if isinstance(error, GraphQLSyntaxError):
        return TOO_COMPLEX if "tokens" in error.message else PARSE_FAILED
    own: str | None = (error.extensions or {}).get("code")
    if own:
        return own  # permission errors, and refusals made here, carry their own
    if unavailable.database_unavailable(original):
        return UNAVAILABLE
    if not error.path and (
        isinstance(original, GraphQLError)
        or (isinstance(original, ValueError) and error.message.startswith("Expected value of"))
    ):
        # A variable or literal that does not coerce to its type; no resolver ran, but
        # graphql-core keeps the cause: the coercion error, or the ValueError of a scalar's
        # parser (int() refuses an Int of 5,000 digits). Bad request.
        return VALIDATION_FAILED
    if original is None and not error.path:
        return TOO_COMPLEX if any(m in error.message for m in _LIMIT_MARKERS) else VALIDATION_FAILED
    return None  # a resolver raised something unforeseen, or graphql-core found a bug


def _format_error(error: GraphQLError) -> GraphQLFormattedError:
    formatted = error.formatted
    code = code_of(error)
    original = error.original_error
    if isinstance(original, DomainError):
        formatted["extensions"] = {"code": code, **original.extensions}
    elif code is None:
        # A bug, logged with its traceback by InventorySchema.process_errors. The client
        # gets a code and the request id, never a traceback.
        formatted["message"] = "internal error; the server log has the details"
        formatted["extensions"] = {"code": INTERNAL}
    elif code == UNAVAILABLE:
        formatted["message"] = unavailable.MESSAGE  # not the driver's words
        formatted["extensions"] = {"code": UNAVAILABLE}
    else:
        formatted["extensions"] = {**(error.extensions or {}), "code": code}
    return formatted


def operation_names(document: DocumentNode) -> list[str]:
    """The document's operations as refusals name them: 'Name', or (anonymous)."""
    return [
        repr(d.name.value) if d.name else "(anonymous)"
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]


def _no_such_operation(request_data: GraphQLRequestData, max_tokens: int) -> str:
    # Parsed a second time only on this error path; the first parse passed the same limit.
    document = parse(request_data.query or "", no_location=True, max_tokens=max_tokens)
    names = operation_names(document)
    if not names:
        return "the document has no operation to run (only fragments)"
    return (
        f"operationName {request_data.operation_name!r} names no operation of the "
        f"document; it has {', '.join(names)}"
    )


def _error_response(message: str, code: str, status: int) -> Response:
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
    )
