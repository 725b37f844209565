"""The FastAPI application factory: routers, error model, middleware and lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from api import openapi, problems
from api.middleware import BodyLimitMiddleware, NulGuardMiddleware, RequestIdMiddleware
from api.routers import health, logs, quotas, runs, tenants
from core import db
from core.notify import PostgresListener
from core.settings import Settings, get_settings

API_VERSION = "0.1.0"


def _operation_id(route: APIRoute) -> str:
    return route.name


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    listener = None if settings.is_sqlite else PostgresListener(settings.database_url)
    if listener is not None:
        listener.start()  # other API processes' changes wake this process's long polls
    try:
        yield
    finally:
        if listener is not None:
            listener.stop()
        app.state.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    app = FastAPI(
        title="Trainport API",
        version=API_VERSION,
        summary="Train models as a service on your own cluster.",
        generate_unique_id_function=_operation_id,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = db.build_engine(settings)
    app.state.sessionmaker = db.make_sessionmaker(app.state.engine)
    problems.install(app)
    openapi.document_problems(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(NulGuardMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(runs.router)
    app.include_router(logs.router)
    app.include_router(tenants.router)
    app.include_router(quotas.router)
    return app
