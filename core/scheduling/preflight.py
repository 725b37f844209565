"""`POST /v1/runs/plan`: what a submission would become, and where and when it would run.

Nothing is written: the body is validated as a create, resolved the way `creation.new_run` lays a
run out (defaults filled in, a generated name), its dataset references resolved to the
versions admission would pin now, and the scheduler's own plan (core/scheduling/planner.py) is
run over the current queue with this run added last in FIFO order, so the answer is the one
the next pass would give: the cluster and GPU type it would be granted, or what blocks it
(`no_capacity`, `quota_exhausted`, `budget_exhausted`, `reserved`, or `unschedulable` when no
registered cluster could ever hold it), its queue position, and what its `max_duration` would
cost at the operator's rates. Kubernetes manifests are not included: they are built by the
worker's executor from the cluster's settings (workers/executors/kubernetes/manifests.py),
which the API does not import.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from core.datasets.pinning import UnresolvedDataset, resolve
from core.models import utcnow
from core.runs import creation
from core.runs.spec import RunCreate
from core.scheduling.clusters import list_clusters
from core.scheduling.eta import estimate_start
from core.scheduling.explain import visible_to
from core.scheduling.planner import (
    Candidate,
    Needs,
    QueueReason,
    fits_anywhere,
    plan_admissions,
)
from core.scheduling.snapshot import load_snapshot, total_capacity
from core.settings import Settings
from core.tenants import service as tenants
from core.tenants.schemas import Principal, Role
from core.usage import rates
from core.usage.rates import RateCard

PLANNED_ID = "run_planned"  # the stand-in id of the run being planned, inside the snapshot
UNSCHEDULABLE = "unschedulable"


class PinnedDataset(BaseModel):
    ref: str
    dataset: str | None = None
    version: int | None = None
    digest: str | None = None
    error: str | None = Field(default=None, description="why the reference would fail the run")


class Placement(BaseModel):
    fits: bool = Field(description="true when the next scheduler pass would start it")
    reason: str = Field(description="ready, or what blocks it (the queue answer's reasons)")
    detail: str
    cluster: str | None = None
    gpu_type: str | None = None
    nodes: int
    gpus_per_node: int
    gpus: int
    position: int | None = Field(default=None, description="place in the admission order")
    estimated_start: datetime | None = Field(
        default=None,
        description="now when it fits; waiting for capacity, when enough running work ends "
        "(the queue answer's eta); otherwise not estimated",
    )


class CostEstimate(BaseModel):
    max_duration_seconds: int | None
    gpu_hours: float | None = Field(description="gpus x max_duration; null without max_duration")
    cost: float | None
    currency: str
    rate: float = Field(description="per GPU-hour of the GPU type it would get")


class RunPlan(BaseModel):
    object: str = "run_plan"
    project_id: str
    spec: dict[str, Any] = Field(description="the spec as it would be stored, defaults filled")
    datasets: list[PinnedDataset]
    placement: Placement
    estimate: CostEstimate
    warnings: list[str] = Field(default_factory=list)


def plan_run(session: Session, caller: Principal, body: RunCreate, settings: Settings) -> RunPlan:
    """The plan of a submission; reads only (the caller's session is rolled back or unchanged)."""
    caller.require(Role.MEMBER)
    project = tenants.resolve_project(session, caller, body.project)
    new = creation.new_run(caller, body, project.id, PLANNED_ID)
    spec = new.run["spec"]
    datasets = [_pin(session, caller.org_id, ref) for ref in body.data.datasets]
    placement = _placement(session, caller, project.id, new.run["priority"], spec, settings)
    warnings = [f"data.datasets: {d.ref!r}: {d.error}" for d in datasets if d.error]
    return RunPlan(
        project_id=project.id,
        spec=spec,
        datasets=datasets,
        placement=placement,
        estimate=_estimate(spec, placement, RateCard.of(settings)),
        warnings=warnings,
    )


def _pin(session: Session, org_id: str, ref: str) -> PinnedDataset:
    try:
        dataset, version = resolve(session, org_id, ref)
    except UnresolvedDataset as exc:
        return PinnedDataset(ref=ref, error=str(exc))
    return PinnedDataset(
        ref=ref, dataset=dataset.name, version=version.version, digest=version.digest
    )


def _placement(
    session: Session,
    caller: Principal,
    project_id: str,
    priority: str,
    spec: dict[str, Any],
    settings: Settings,
) -> Placement:
    needs = Needs.of(spec)
    compute = dict(spec.get("compute") or {})
    shape = {
        "nodes": needs.nodes,
        "gpus_per_node": int(compute.get("gpus_per_node") or 0),
        "gpus": needs.gpus,
    }
    clusters = list_clusters(session)
    why = fits_anywhere(needs, total_capacity(clusters)) if clusters else None
    if why is not None:
        return Placement(fits=False, reason=UNSCHEDULABLE, detail=why, **shape)
    now = utcnow()
    snapshot = load_snapshot(session, settings, now, clusters)
    me = Candidate(PLANNED_ID, caller.org_id, project_id, priority, now, needs)
    snapshot.candidates = [*snapshot.candidates, me]
    plan = plan_admissions(snapshot)
    position = plan.position(PLANNED_ID, lambda owner: visible_to(caller, owner))
    for candidate, grant in plan.admitted:
        if candidate.run_id == PLANNED_ID:
            detail = f"it fits now on {grant.cluster}; the next scheduler pass would start it"
            return Placement(
                fits=True, reason="ready", detail=detail, cluster=grant.cluster,
                gpu_type=grant.gpu_type, position=position, estimated_start=now, **shape,
            )  # fmt: skip
    if not clusters:
        detail = "no cluster is registered yet; it would wait in the queue"
        return Placement(fits=False, reason="no_capacity", detail=detail, **shape)
    blocker = plan.blocked[PLANNED_ID]
    eta = None
    if blocker.reason in {QueueReason.NO_CAPACITY, QueueReason.RESERVED}:
        eta = estimate_start(needs, snapshot)
    return Placement(
        fits=False, reason=blocker.reason.value, detail=blocker.detail, position=position,
        estimated_start=eta, **shape,
    )  # fmt: skip


def _estimate(spec: dict[str, Any], placement: Placement, card: RateCard) -> CostEstimate:
    scheduling = dict(spec.get("scheduling") or {})
    compute = dict(spec.get("compute") or {})
    seconds = scheduling.get("max_duration")
    gpu_type = placement.gpu_type or compute.get("gpu_type")
    rate = card.rate(gpu_type) if placement.gpus else 0.0
    if seconds is None:
        return CostEstimate(
            max_duration_seconds=None, gpu_hours=None, cost=None, currency=card.currency, rate=rate
        )
    gpu_hours = rates.hours(placement.gpus * int(seconds))
    return CostEstimate(
        max_duration_seconds=int(seconds),
        gpu_hours=gpu_hours,
        cost=rates.money(rate * gpu_hours),
        currency=card.currency,
        rate=rate,
    )
