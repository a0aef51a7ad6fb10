"""The ASGI application, built by one function from explicit parts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from api import graphiql, oidc
from api.body_limit import BodySizeLimit, lower_body_limit
from api.db.candidates import LiveIndex, prune_changes
from api.db.release import expire_leases
from api.db.session import is_at_head, make_engine, session_factory, unit_of_work
from api.dispatcher import Dispatcher
from api.graphql.schema import build_schema
from api.graphql.view import GraphQLView
from api.logs import RequestContext, configure_logging
from api.metrics import exposition
from api.queue_worker import QueueWorker
from api.settings import Settings

log = logging.getLogger("gpuinv.app")
DASHBOARD = Path(__file__).with_name("dashboard")


# NetBox sends one object and its snapshots, tens of KiB. Its signature can only be checked
# once the body is read, so until then the body is anyone's: a limit of its own.
NETBOX_HOOK_MAX_BODY_BYTES = 1024 * 1024


def netbox_webhook(
    sessions: sessionmaker[Session], settings: Settings
) -> Callable[[Request], Awaitable[Response]]:
    # The one place the service mounts the sync worker's code: NetBox's webhooks.
    from sync.webhook import endpoint

    hook: Callable[[Request], Awaitable[Response]] = endpoint(sessions, settings)

    async def limited(request: Request) -> Response:
        lower_body_limit(request.scope, NETBOX_HOOK_MAX_BODY_BYTES, "the NetBox webhook's limit")
        return await hook(request)

    return limited


def ops_routes(engine: Engine, sessions: sessionmaker[Session], metrics: bool) -> list[Route]:
    """/healthz, /readyz and (if ``metrics``) /metrics: no token, for load balancers,
    orchestrators and Prometheus. Served by the API, or on their own address."""

    async def healthz(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")  # the process is up and serving

    def check_ready() -> JSONResponse:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            at_head = is_at_head(engine)
        except Exception as exc:  # the database is down: say so, do not crash
            return JSONResponse({"ready": False, "database": str(exc).splitlines()[0]}, 503)
        body: dict[str, Any] = {
            "ready": at_head,
            "database": "ok",
            "migrations": "at head" if at_head else "behind",
        }
        return JSONResponse(body, 200 if at_head else 503)

    async def readyz(_: Request) -> JSONResponse:
        return await asyncio.to_thread(check_ready)  # a slow database must not stall the loop

    async def metrics_text(_: Request) -> Response:
        body, content_type = await asyncio.to_thread(exposition, sessions)
        return Response(body, media_type=content_type)

    routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
    if metrics:
        routes.append(Route("/metrics", metrics_text))
    return routes


def create_ops_app(settings: Settings) -> Starlette:
    """The operations endpoints alone, for GPUINV_OPS_ADDRESS (``serve --ops-address``):
    then /metrics is not on the API's address at all."""
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        engine.dispose()

    return Starlette(
        routes=ops_routes(engine, session_factory(engine), metrics=True),
        middleware=[Middleware(RequestContext)],
        lifespan=lifespan,
    )


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    live_index = LiveIndex()
    graphql = GraphQLView(build_schema(settings), engine, sessions, settings, live_index)

    async def home(_: Request) -> FileResponse:
        # The fleet dashboard: a static page that asks for a token and reads /graphql.
        return FileResponse(DASHBOARD / "index.html")

    async def sign_in(_: Request) -> JSONResponse:
        # The issuers the dashboard offers "Sign in with …" for (dashboard-oidc.js). Public
        # by nature, as a login page's buttons are: an issuer is listed only when the
        # operator gave it a clientId.
        return JSONResponse({"issuers": oidc.sign_in_options(settings.oidc_issuers)})

    async def favicon(_: Request) -> FileResponse:
        # The service's icon, for the dashboard and GraphiQL alike: an SVG, which browsers
        # take at /favicon.ico when it says it is one.
        return FileResponse(graphiql.FAVICON, media_type="image/svg+xml")

    index_ready = threading.Event()

    def warm_index() -> None:
        try:
            with engine.connect() as connection:
                live_index.current(connection)
        finally:
            # Everything loaded so far (modules, the match index) lives as long as the
            # process: freeze it out of the cyclic collector, whose full passes over it
            # otherwise stall a request for ~100 ms every dozen requests.
            gc.collect()
            gc.freeze()
            index_ready.set()

    def sweep_leases() -> int:
        with unit_of_work(sessions) as session:
            prune_changes(session)
            return expire_leases(session)

    async def lease_sweeper() -> None:
        """Release allocations whose lease ran out, so abandoned pipelines free GPUs."""
        while True:
            await asyncio.sleep(settings.lease_sweep_seconds)
            try:
                released = await asyncio.to_thread(sweep_leases)
                if released:
                    log.info("released %d allocation(s) whose lease expired", released)
            except Exception:  # keep sweeping; the next round retries
                log.exception("lease sweep failed")

    # Webhooks' events go out from every replica that can sign them (one leads at a time).
    dispatcher = (
        Dispatcher.of(sessions, settings)
        if settings.secret_key and settings.webhook_dispatch
        else None
    )

    # The provision request queue: served by one replica at a time, like the dispatcher.
    queue_worker = QueueWorker.of(sessions, live_index, settings)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Load the match index in the background: the first match need not pay for it,
        # and the process answers health checks meanwhile.
        warming = asyncio.get_running_loop().run_in_executor(None, warm_index)
        sweeper = asyncio.create_task(lease_sweeper())
        dispatching = asyncio.create_task(dispatcher.run()) if dispatcher else None
        queueing = asyncio.create_task(queue_worker.run())
        yield
        sweeper.cancel()
        for task in (dispatching, queueing):
            if task is not None:
                task.cancel()  # each gives up its lease on the way out
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await warming
        graphql.workers.shutdown(wait=False, cancel_futures=True)  # idle threads go at once
        if graphql.oidc is not None:
            graphql.oidc.close()  # the issuers' keep-alive connections
        engine.dispose()

    middleware = [
        Middleware(RequestContext),  # outermost: every response has an id and a log line
        Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
                expose_headers=["X-Request-Id"],
            )
        )
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            *ops_routes(engine, sessions, metrics=not settings.ops_address),
            Route("/hooks/netbox", netbox_webhook(sessions, settings), methods=["POST"]),
            Route("/", home),
            Route("/dashboard/sign-in.json", sign_in),  # before the static mount it sits in
            Mount("/dashboard", StaticFiles(directory=DASHBOARD), name="dashboard"),
            Route("/favicon.ico", favicon),
            # GraphiQL's scripts and styles, vendored (api/graphiql): with GraphiQL off
            # (GPUINV_GRAPHIQL=0) nothing would use them, so they are not served either.
            *(
                [Mount("/graphiql", StaticFiles(directory=graphiql.STATIC), name="graphiql")]
                if settings.graphiql
                else []
            ),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.live_index = live_index
    app.state.index_ready = index_ready
    app.state.dispatcher = dispatcher
    app.state.queue_worker = queue_worker
    return app


def create_app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` (several worker processes)."""
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
