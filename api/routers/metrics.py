"""`/v1/runs/{id}/metrics` and `/heartbeat`: what a run's runtime reports, and series to plot."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import Caller, RunCaller, SessionDep
from api.routers.runs import RunId
from api.routing import UnitOfWorkRoute
from core.metrics import service
from core.metrics.schemas import Accepted, Heartbeat, MetricBatch, MetricName, SeriesSet

router = APIRouter(prefix="/v1/runs", tags=["metrics"], route_class=UnitOfWorkRoute)


@router.post("/{run_id}/metrics", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
def record_metrics(
    run_id: RunId, body: MetricBatch, caller: RunCaller, session: SessionDep
) -> Accepted:
    """Append up to 10 000 points (`{step, values, time?}`); API key or the run's own token."""
    return Accepted(accepted=service.record_points(session, caller, run_id, body))


@router.get("/{run_id}/metrics", response_model=SeriesSet)
def read_metrics(
    run_id: RunId,
    caller: Caller,
    session: SessionDep,
    name: Annotated[list[MetricName] | None, Query(max_length=64)] = None,
    max_points: Annotated[int, Query(ge=2, le=10_000)] = 1000,
) -> SeriesSet:
    """Series by name (all when none is named), downsampled to `max_points` each."""
    return service.read_series(session, caller, run_id, name or [], max_points)


@router.post("/{run_id}/heartbeat", status_code=status.HTTP_204_NO_CONTENT)
def record_heartbeat(
    run_id: RunId, body: Heartbeat, caller: RunCaller, session: SessionDep
) -> Response:
    """Progress from the run: step, total steps, and the step an attempt resumed from."""
    service.heartbeat(session, caller, run_id, body)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
