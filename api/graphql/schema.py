"""The schema: merges one Query/Mutation fragment per noun and attaches the limits."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import (
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
    max_aliases,
    query_depth_limiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from api.db.unavailable import first_line
from api.domain.errors import UNAVAILABLE
from api.graphql.allocation import AllocationMutation, AllocationQuery, AllocationTotalsQuery
from api.graphql.audit import AuditQuery
from api.graphql.capacity import BIG_INT, BigInt, CapacityQuery, FleetQuery
from api.graphql.device import Device, DeviceMutation, DeviceQuery, Vm
from api.graphql.health import HealthMutation
from api.graphql.infiniband import Infiniband, InfinibandMutation, InfinibandQuery
from api.graphql.inventory_import import ImportMutation
from api.graphql.node import NodeMutation, NodeQuery
from api.graphql.profile import ProfileMutation, ProfileQuery
from api.graphql.provision_request import ProvisionRequestMutation, ProvisionRequestQuery
from api.graphql.quota import QuotaMutation, QuotaQuery
from api.graphql.switch import Switch, SwitchMutation, SwitchQuery
from api.graphql.sync_state import SyncStateQuery
from api.graphql.tenant import TenantMutation, TenantQuery
from api.graphql.view import VALIDATION_FAILED, code_of, operation_names
from api.graphql.webhook import WebhookMutation, WebhookQuery
from api.settings import Settings

log = logging.getLogger("gpuinv.graphql")

Query = merge_types(
    "Query",
    (
        DeviceQuery,
        SwitchQuery,
        InfinibandQuery,
        NodeQuery,
        TenantQuery,
        ProfileQuery,
        AllocationQuery,
        AllocationTotalsQuery,
        SyncStateQuery,
        CapacityQuery,
        FleetQuery,
        AuditQuery,
        QuotaQuery,
        ProvisionRequestQuery,
        WebhookQuery,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        DeviceMutation,
        SwitchMutation,
        InfinibandMutation,
        NodeMutation,
        TenantMutation,
        ImportMutation,
        ProfileMutation,
        AllocationMutation,
        HealthMutation,
        QuotaMutation,
        ProvisionRequestMutation,
        WebhookMutation,
    ),
)


class InventorySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log a bug at ERROR with its traceback, once; refusals with a code are the API
        working as designed (DEBUG), a lost database connection an outage (WARNING)."""
        for error in errors:
            code = code_of(error)
            if code is None:
                log.error("unexpected error in %s: %s", error.path, error.message,
                          exc_info=error.original_error)  # fmt: skip
            elif code == UNAVAILABLE:
                log.warning("database unavailable in %s: %s", error.path,
                            first_line(error.original_error or error))  # fmt: skip
            else:
                log.debug("refused with %s: %s", code, error.message)


class OperationChoice(SchemaExtension):
    """The spec's GetOperation: a document of several operations runs none of them unless
    ``operationName`` picks one. (strawberry runs the first: it fills in the missing name.)
    An operationName that names no operation is refused by the view."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # The name as the client sent it (the public ``operation_name`` is filled in with
        # the first operation's); tests/api/test_hostile_http.py pins both cases.
        given = getattr(context, "_provided_operation_name", None)
        if given is None and document is not None:
            names = operation_names(document)
            if len(names) > 1:
                message = (
                    f"the document has {len(names)} operations ({', '.join(names)}): "
                    "say which to run with operationName"
                )
                error = GraphQLError(message, extensions={"code": VALIDATION_FAILED})
                # strawberry's documented short-cut: a result set here is not executed
                context.result = GraphQLExecutionResult(data=None, errors=[error])
        yield


class OperationName(SchemaExtension):
    """Names the request after its first root field (``matchDevice``, ``devices``) for
    the latency histogram and the access log (api/logs.py): a label with few values,
    unlike client-chosen operation names. Unparseable requests are ``invalid``."""

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        document = self.execution_context.graphql_document
        name = "invalid"
        if document is not None:
            for definition in document.definitions:
                if isinstance(definition, OperationDefinitionNode):
                    fields = [
                        s.name.value
                        for s in definition.selection_set.selections
                        if isinstance(s, FieldNode)
                    ]
                    if len(fields) == 1:
                        name = fields[0]
                    elif fields:  # several root fields: the first by name, marked
                        name = min(fields) + "+"
                    break
        request = getattr(context, "request", None)
        if request is not None:
            request.scope.setdefault("state", {})["operation"] = name


def _depth_limit(max_depth: int) -> type[ValidationRule]:
    """strawberry's depth limit, less its two crashes: it looks up every fragment a spread
    names, so a spread of an undefined fragment raised KeyError (an internal error) before
    graphql-core's own rule could answer "Unknown fragment"; and it takes the max() of an
    empty selection set (``{}``, which the parser accepts), a ValueError."""
    limit = query_depth_limiter.create_validator(max_depth, None, None)

    # A subclass of a class made at run time (create_validator's): no base class to mypy.
    class DepthLimit(limit):  # type: ignore[misc, valid-type]
        def __init__(self, context: ValidationContext) -> None:
            try:
                super().__init__(context)
            except (KeyError, ValueError):  # other rules refuse such documents
                ValidationRule.__init__(self, context)

    return DepthLimit


class StorableStrings(ValidationRule):
    """String literals that text columns can hold. A document may write NUL as "\\u0000",
    which PostgreSQL refuses (a lone surrogate, graphql-core's lexer refuses itself);
    variables are checked where the request is read (api/graphql/request.py)."""

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if "\x00" in node.value:
            self.report_error(
                GraphQLError(
                    "a string literal holds a NUL character (U+0000), which no text "
                    "column can hold",
                    node,
                )
            )


class SelectionsNotEmpty(ValidationRule):
    """The spec's grammar has a selection set select at least one field
    (``{ Selection+ }``); graphql-core's parser takes ``{}`` as well, which would answer
    ``{"data": {}}`` to a document that asks for nothing."""

    def enter_selection_set(self, node: SelectionSetNode, *_: Any) -> None:
        if not node.selections:
            self.report_error(
                GraphQLError("a selection set selects no field: name at least one", node)
            )


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    # The limit rules are built once: ValidationCache keys on the rule classes, and
    # QueryDepthLimiter/MaxAliasesLimiter would make new classes per request, so no
    # validation would ever be found in the cache (it cost a fifth of matchDevice's CPU).
    limits = [
        _depth_limit(settings.max_query_depth),
        max_aliases.create_validator(settings.max_query_aliases),
        StorableStrings,
        SelectionsNotEmpty,
    ]
    extensions: list[Any] = [  # factories: a fresh extension per request
        lambda: AddValidationRules(limits),
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        # Portals and pipelines send the same few documents over and over: parse and
        # validate each once. Small caches, because a document may inline a large string.
        lambda: ParserCache(maxsize=64),
        lambda: ValidationCache(maxsize=64),
        OperationName,
        OperationChoice,
    ]
    return InventorySchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        types=[Device, Vm, Switch, Infiniband],
        config=StrawberryConfig(scalar_map={BigInt: BIG_INT}),
    )


def printed_schema() -> str:
    """The SDL that ``schema.graphql`` holds; regenerate with ``python -m api.graphql.schema``."""
    return build_schema().as_str() + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(printed_schema())
