"""Liveness and readiness probes, unauthenticated."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.routing import UnitOfWorkRoute

router = APIRouter(tags=["health"], route_class=UnitOfWorkRoute)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _database_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


@router.get("/readyz", responses={503: {"description": "database unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Ready to serve: the database answers. `sandbox` says whether local runs are sandboxed
    (`bwrap: ...`, `off: ...` or `unavailable: why`); it never makes the platform unready."""
    sandbox: str = request.app.state.sandbox
    if await run_in_threadpool(_database_reachable, request.app.state.engine):
        return JSONResponse({"status": "ready", "database": "ok", "sandbox": sandbox})
    body = {"status": "unavailable", "database": "unreachable", "sandbox": sandbox}
    return JSONResponse(body, status_code=503)
