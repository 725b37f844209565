"""The FastAPI application factory: routers, error model, middleware and lifespan."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import make_url

import dashboard
from api import openapi, problems, telemetry
from api.edge import EdgeMiddleware
from api.middleware import (
    BodyLimitMiddleware,
    BodyRule,
    NulGuardMiddleware,
    RateCardMiddleware,
    RequestIdMiddleware,
)
from api.routers import (
    checkpoints,
    code,
    datasets,
    events,
    health,
    logs,
    metrics,
    outputs,
    provenance,
    quotas,
    run_storage,
    runs,
    secrets,
    tenants,
    usage,
    webhooks,
)
from api.run_access import EventLoopRunAccess, RunAccess, ThreadpoolRunAccess
from core import db, process_logging, sandbox
from core import telemetry as platform_metrics
from core.aio import AsyncDatabase
from core.metrics.schemas import MAX_METRICS_BODY_BYTES
from core.notify import PostgresListener, SqliteVersionWatcher
from core.process_logging import lifecycle
from core.provenance.service import check_signing_keys
from core.ratelimit import RateLimiter
from core.runs.waiting import WaitingRoom
from core.settings import Settings, get_settings
from core.storage.backends import check_store_reachable_by_runs
from core.usage.rates import RateCard

API_VERSION = "0.1.0"


def _operation_id(route: APIRoute) -> str:
    return route.name


def _change_listener(settings: Settings) -> PostgresListener | SqliteVersionWatcher | None:
    if not settings.is_sqlite:
        return PostgresListener(settings.database_url)
    in_memory = settings.database_url.rstrip("/").endswith((":memory:", "sqlite:"))
    return None if in_memory else SqliteVersionWatcher(settings.database_url)


def _shown(settings: Settings) -> str:
    return make_url(settings.database_url).render_as_string(hide_password=True)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    check_store_reachable_by_runs(settings)  # an API that knows runs go to Kubernetes
    listener = _change_listener(settings)
    if listener is not None:
        listener.start()  # other processes' changes wake this process's long polls
    if settings.async_reads and not settings.is_sqlite:
        app.state.async_db = AsyncDatabase(settings.database_url, settings.database_pool_size)
        await app.state.async_db.open()
    app.state.run_access = _run_access(app, app.state.async_db)  # chosen once, here
    lifecycle.info("API ready: database %s, log level %s", _shown(settings), settings.log_level)
    try:
        yield
    finally:
        lifecycle.info("API stopping")
        pump = getattr(app.state, "event_pump", None)
        if pump is not None:
            await pump.close()
            app.state.event_pump = None
        if app.state.async_db is not None:
            await app.state.async_db.close()
            app.state.async_db = None
            app.state.run_access = _run_access(app, None)
        if listener is not None:
            listener.stop()
        app.state.engine.dispose()
        app.state.read_engine.dispose()  # its own pool on SQLite (`core.db.read_engine`)


def _run_access(app: FastAPI, db: AsyncDatabase | None) -> RunAccess:
    """The run routes' way to the data (api/run_access.py): asyncpg's event loop where open."""
    state = app.state
    parts = (
        state.settings,
        state.sessionmaker,
        state.read_engine,
        state.rate_limiter,
        state.waiting_room,
    )
    return ThreadpoolRunAccess(*parts) if db is None else EventLoopRunAccess(db, *parts)


def _body_rules(settings: Settings) -> list[BodyRule]:
    """Metric batches are larger than other bodies; dataset uploads stream through unbuffered."""
    return [
        BodyRule(re.compile(r"/v1/runs/[^/]+/metrics"), MAX_METRICS_BODY_BYTES),
        BodyRule(
            re.compile(r"/v1/datasets/[^/]+/versions"), settings.max_upload_bytes, streamed=True
        ),
        BodyRule(re.compile(r"/v1/code/[^/]+"), settings.max_code_snapshot_bytes, streamed=True),
    ]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    process_logging.configure(settings)
    app = FastAPI(
        title="Trainport API",
        version=API_VERSION,
        summary="Train models as a service on your own cluster.",
        generate_unique_id_function=_operation_id,
        lifespan=_lifespan,
        docs_url=None,  # /docs and /redoc come from dashboard.mount, with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    check_signing_keys(settings)  # a bad key mount fails the start, not the first signature
    app.state.engine = db.build_engine(settings)
    app.state.sessionmaker = db.make_sessionmaker(app.state.engine)
    # Reads of runs (core/runs/reads.py, the run list) in autocommit on PostgreSQL.
    app.state.read_engine = db.read_engine(app.state.engine)
    app.state.read_sessionmaker = db.make_sessionmaker(app.state.read_engine)
    # Run reads and creates on the event loop (core/aio.py); opened by the lifespan on PostgreSQL.
    app.state.async_db = None
    # The API's edge (api/edge.py): rate limits, and the cap on an org's waiting runs.
    app.state.rate_limiter = RateLimiter(settings)
    app.state.waiting_room = WaitingRoom(settings.max_waiting_runs_per_org)
    # Until the lifespan picks (an app served without one keeps the threadpool's way).
    app.state.run_access = _run_access(app, None)
    # Whether local ranks are sandboxed: warned about here, shown by /readyz.
    app.state.sandbox = sandbox.announce(settings).describe()
    # Event streams share one pump per process (core/events/stream.py), made on first use.
    app.state.event_pump = None
    # What /metrics shows (api/telemetry.py): this process's series and the platform's gauges.
    app.state.metrics_registry = platform_metrics.registry(app.state.read_engine)
    problems.install(app)
    openapi.document_problems(app)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, rules=_body_rules(settings)
    )
    app.add_middleware(NulGuardMiddleware)
    app.add_middleware(RateCardMiddleware, card=RateCard.of(settings))
    # Outside the body limit: a throttled client is refused before its body is even buffered.
    app.add_middleware(EdgeMiddleware, limiter=app.state.rate_limiter)
    # Inside the request id (it logs it), outside the rest (it counts their refusals too).
    app.add_middleware(telemetry.TelemetryMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(runs.router)
    app.include_router(logs.router)
    app.include_router(tenants.router)
    app.include_router(quotas.router)
    app.include_router(usage.router)
    app.include_router(metrics.router)
    app.include_router(checkpoints.router)
    app.include_router(outputs.router)
    app.include_router(run_storage.router)
    app.include_router(datasets.router)
    app.include_router(code.router)
    app.include_router(provenance.router)
    app.include_router(secrets.router)
    app.include_router(events.router)
    app.include_router(webhooks.router)
    dashboard.mount(app)  # /ui/, / and /docs, /redoc
    return app
