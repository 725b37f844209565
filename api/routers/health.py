"""Liveness and readiness probes, unauthenticated, and the Prometheus scrape (`/metrics`)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, MetricsRegistryDep, SandboxDep, SettingsDep
from api.edge import bearer_secret
from api.routing import UnitOfWorkRoute
from core.errors import NotFound, Unauthenticated
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


@router.get("/metrics", include_in_schema=False)
async def metrics(
    request: Request, settings: SettingsDep, registry: MetricsRegistryDep
) -> Response:
    """Prometheus text format: this API's requests and streams, and the platform's gauges."""
    if not settings.metrics_enabled:
        raise NotFound("Metrics are off; set TRAINPORT_METRICS_ENABLED=true to serve them.")
    token = settings.metrics_token
    if token is not None:
        presented = bearer_secret(request.headers) or ""
        if not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
            raise Unauthenticated(
                "Scraping /metrics needs the bearer token TRAINPORT_METRICS_TOKEN."
            )
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
