"""The typed way to what `create_app` and its lifespan (api/app.py) keep on `app.state`.

Starlette's `State` holds untyped attributes; each accessor here names one entry's type once,
so the request dependencies (api/deps.py), the edge (api/edge.py) and the tests read it
checked rather than as `Any`.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.aio import AsyncDatabase
from core.ratelimit import RateLimiter
from core.settings import Settings


def app_settings(app: FastAPI) -> Settings:
    settings: Settings = app.state.settings
    return settings


def app_engine(app: FastAPI) -> Engine:
    engine: Engine = app.state.engine
    return engine


def app_sessionmaker(app: FastAPI) -> sessionmaker[Session]:
    """The read-write sessions (core/db.py's `session_scope` commits or rolls them back)."""
    factory: sessionmaker[Session] = app.state.sessionmaker
    return factory


def app_rate_limiter(app: FastAPI) -> RateLimiter:
    limiter: RateLimiter = app.state.rate_limiter
    return limiter


def app_async_db(app: FastAPI) -> AsyncDatabase | None:
    """The event loop's database (core/aio.py): open while the lifespan runs on PostgreSQL."""
    db: AsyncDatabase | None = app.state.async_db
    return db
