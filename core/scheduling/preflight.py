"""`POST /v1/runs/plan`: what a submission would become, and where and when it would run.

Nothing is written: the body is validated as a create, resolved the way `creation.new_run` lays a
run out (defaults filled in, a generated name), its dataset references resolved to the
versions admission would pin now, and the scheduler's own plan (core/scheduling/planner.py) is
run over the current queue with this run added last in FIFO order, so the answer is the one
the next pass would give: the cluster and GPU type it would be granted, or what blocks it
(`no_capacity`, `quota_exhausted`, `budget_exhausted`, `reserved`, or `unschedulable` when no
registered cluster could ever hold it), its queue position, and what its `max_duration` would
cost at the operator's rates. When it would run on a Kubernetes cluster, `manifests` holds
the objects that cluster's executor would apply (core/scheduling/preflight_manifests.py): the
same renderer and settings, launch-time values (the run token, a git run's snapshot) shown as
placeholders, and never a secret's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from core.datasets.pinning import UnresolvedDataset, resolve
from core.executor_kinds import ExecutorKind
from core.models import Cluster, DatasetVersion, utcnow
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
from core.scheduling.preflight_manifests import (
    MINTED_AT_LAUNCH,
    PACKED_AT_LAUNCH,
    PlannedRun,
    kubernetes_cluster,
    render,
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
    manifests: list[dict[str, Any]] | None = Field(
        default=None,
        description="What the Kubernetes executor would apply, in the API's own JSON, for the "
        "cluster in `placement.cluster` (not placed yet: the first Kubernetes cluster): the "
        "org's Secret when the run reads secrets (its name and keys; each value a placeholder "
        "naming the secret, never the value), the Indexed Job and its headless Service (owned "
        "by the Job once it exists). Values known only at launch are placeholders: the run id "
        f"is `{PLANNED_ID}`, the run token `{MINTED_AT_LAUNCH}`, a git run's snapshot digest "
        f"`{PACKED_AT_LAUNCH}`. Null when the run would run as local "
        "processes, or the launch would be refused (`warnings` says why).",
    )


def plan_run(session: Session, caller: Principal, body: RunCreate, settings: Settings) -> RunPlan:
    """The plan of a submission; reads only (the caller's session is rolled back or unchanged),
    but for the installation's id, made on first use as any worker would (core/installation.py)."""
    caller.require(Role.MEMBER)
    project = tenants.resolve_project(session, caller, body.project)
    new = creation.new_run(caller, body, project.id, PLANNED_ID)
    spec = new.run["spec"]
    pins = [_pin(session, caller.org_id, ref) for ref in body.data.datasets]
    datasets = [pin for pin, _ in pins]
    clusters = list_clusters(session)
    placement, nodes = _placement(
        session, caller, project.id, new.run["priority"], spec, settings, clusters
    )
    warnings = [f"data.datasets: {d.ref!r}: {d.error}" for d in datasets if d.error]
    versions = {pin.dataset: version for pin, version in pins if pin.dataset and version}
    planned = PlannedRun(PLANNED_ID, caller.org_id, project.id, spec, versions, nodes)
    manifests = _manifests(session, settings, placement, clusters, planned, warnings)
    return RunPlan(
        project_id=project.id,
        spec=spec,
        datasets=datasets,
        placement=placement,
        estimate=_estimate(spec, placement, RateCard.of(settings)),
        warnings=warnings,
        manifests=manifests,
    )


def _manifests(
    session: Session,
    settings: Settings,
    placement: Placement,
    clusters: Sequence[Cluster],
    planned: PlannedRun,
    warnings: list[str],
) -> list[dict[str, Any]] | None:
    """The manifests of the cluster it would run on (None: local), adding what to warn about."""
    cluster = kubernetes_cluster(placement.cluster, clusters, settings)
    if cluster is None:
        return None
    others = {c.name for c in clusters if c.executor == ExecutorKind.KUBERNETES} - {cluster}
    if placement.cluster is None and others:
        warnings.append(
            f"manifests: shown for cluster {cluster}; the run is not placed yet and may go to "
            f"{', '.join(sorted(others))}, whose settings may differ"
        )
    rendered = render(session, settings, cluster, planned)
    warnings.extend(rendered.warnings)
    return rendered.objects


def _pin(session: Session, org_id: str, ref: str) -> tuple[PinnedDataset, DatasetVersion | None]:
    try:
        dataset, version = resolve(session, org_id, ref)
    except UnresolvedDataset as exc:
        return PinnedDataset(ref=ref, error=str(exc)), None
    pin = PinnedDataset(
        ref=ref, dataset=dataset.name, version=version.version, digest=version.digest
    )
    return pin, version


def _placement(
    session: Session,
    caller: Principal,
    project_id: str,
    priority: str,
    spec: dict[str, Any],
    settings: Settings,
    clusters: Sequence[Cluster],
) -> tuple[Placement, tuple[str, ...]]:
    """Where the next pass would start it (and the nodes its GPU gang would get), or why not."""
    needs = Needs.of(spec)
    compute = dict(spec.get("compute") or {})
    shape = {
        "nodes": needs.nodes,
        "gpus_per_node": int(compute.get("gpus_per_node") or 0),
        "gpus": needs.gpus,
    }
    why = fits_anywhere(needs, total_capacity(clusters)) if clusters else None
    if why is not None:
        return Placement(fits=False, reason=UNSCHEDULABLE, detail=why, **shape), ()
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
            ), tuple(sorted(grant.placement))  # fmt: skip
    if not clusters:
        detail = "no cluster is registered yet; it would wait in the queue"
        return Placement(fits=False, reason="no_capacity", detail=detail, **shape), ()
    blocker = plan.blocked[PLANNED_ID]
    eta = None
    if blocker.reason in {QueueReason.NO_CAPACITY, QueueReason.RESERVED}:
        eta = estimate_start(needs, snapshot)
    return Placement(
        fits=False, reason=blocker.reason.value, detail=blocker.detail, position=position,
        estimated_start=eta, **shape,
    ), ()  # fmt: skip


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
