"""Liveness and readiness probes, unauthenticated."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, SandboxDep
from api.routing import UnitOfWorkRoute
from core.scheduling.clusters import unsupported_clusters

router = APIRouter(tags=["health"], route_class=UnitOfWorkRoute)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _database_state(engine: Engine) -> dict[str, str] | None:
    """The clusters whose Kubernetes version Trainport does not support (name → why), or None
    when the database does not answer."""
    try:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))
            return unsupported_clusters(session)
    except SQLAlchemyError:
        return None


@router.get("/readyz", responses={503: {"description": "database unreachable"}})
async def readyz(sandbox: SandboxDep, engine: EngineDep) -> JSONResponse:
    """Ready to serve: the database answers. `sandbox` says whether local runs are sandboxed
    (`bwrap: ...`, `off: ...` or `unavailable: why`); `unsupported_clusters` names each
    registered cluster whose Kubernetes version Trainport does not support, and why. Neither
    makes the platform unready: other clusters, and single-node runs, still work."""
    unsupported = await run_in_threadpool(_database_state, engine)
    if unsupported is not None:
        body = {"status": "ready", "database": "ok", "sandbox": sandbox}
        return JSONResponse({**body, "unsupported_clusters": unsupported})
    body = {"status": "unavailable", "database": "unreachable", "sandbox": sandbox}
    return JSONResponse(body, status_code=503)
