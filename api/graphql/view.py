"""The HTTP face of the schema: authentication, error codes, no tracebacks to clients."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError, GraphQLSyntaxError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import StrawberryGraphQLError
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from api.db.candidates import LiveIndex
from api.db.token import authenticate
from api.domain.errors import DomainError
from api.graphql.context import Context
from api.settings import Settings

log = logging.getLogger("gpuinv.graphql")

PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
TOO_COMPLEX = "QUERY_TOO_COMPLEX"
INTERNAL = "INTERNAL_SERVER_ERROR"

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


class GraphQLView(GraphQL):
    def __init__(
        self,
        schema: Any,
        sessions: sessionmaker[Session],
        settings: Settings,
        live_index: LiveIndex,
    ):
        super().__init__(schema, graphql_ide="graphiql" if settings.graphiql else None)
        self.sessions = sessions
        self.settings = settings
        self.live_index = live_index

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive=receive)
        context = self._context(request)
        try:
            response = await self.run(request, context=context)
        except HTTPException as exc:
            response = _error_response(exc.reason, PARSE_FAILED, exc.status_code)
        finally:
            context.close()
        response.headers["X-Request-Id"] = context.request_id
        await response(scope, receive, send)

    def _context(self, request: Request) -> Context:
        # api/logs.RequestContext names every request; a bare view (no middleware) makes one
        request_id = request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        principal, problem = None, None
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                problem = "Authorization header must be 'Bearer <token>'"
            else:
                with self.sessions() as session:
                    principal, problem = authenticate(session, secret.strip())
        if principal is not None:
            principal = replace(principal, request_id=request_id)
        return Context(
            request=request,
            settings=self.settings,
            sessions=self.sessions,
            principal=principal,
            auth_problem=problem,
            request_id=request_id,
            live_index=self.live_index,
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            data["errors"] = [_format_error(e, result.data is None) for e in result.errors]
        if result.extensions:
            data["extensions"] = result.extensions
        return data


def _format_error(error: GraphQLError, pre_execution: bool) -> dict[str, Any]:
    formatted = error.formatted
    original = error.original_error
    if isinstance(original, DomainError):
        formatted["extensions"] = {"code": original.code, **original.extensions}
    elif isinstance(error, GraphQLSyntaxError):
        code = TOO_COMPLEX if "tokens" in error.message else PARSE_FAILED
        formatted["extensions"] = {"code": code}
    elif isinstance(error, StrawberryGraphQLError) or (error.extensions or {}).get("code"):
        pass  # permission errors carry their own code
    elif not error.path and isinstance(original, GraphQLError):
        # A variable whose value does not coerce to its declared type: graphql-core wraps
        # the coercion error, so original_error is set, but no resolver ran. Bad request.
        formatted["extensions"] = {"code": VALIDATION_FAILED}
    elif original is None and (pre_execution or not error.path):
        code = TOO_COMPLEX if any(m in error.message for m in _LIMIT_MARKERS) else VALIDATION_FAILED
        formatted["extensions"] = {"code": code}
    else:
        # A bug. The client gets a code and the request id, never a traceback.
        log.error("internal error: %s", error.message, exc_info=original)
        formatted["message"] = "internal error; the server log has the details"
        formatted["extensions"] = {"code": INTERNAL}
    return formatted


def _error_response(message: str, code: str, status: int) -> Response:
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
    )
