""" "Why is my run pending": the queue position and blocker of a run that has not started.

It runs the scheduler's own plan over the current state, read-only, so the answer is the one
the next pass would act on: `quota_exhausted` ("16 of 16 GPUs of org acme in use"),
`no_capacity` ("needs 2 x 8 a100 on one cluster, best fit 1 x 8 + 2 x 4"), `reserved` (held
for a starved run), `preempting` (lower-priority runs are stopping for it), or `ready` (it
fits; the next pass starts it). A run waiting for capacity gets an `eta`
(core/scheduling/eta.py) from the running work's max_duration.

A plan costs as much as a scheduler pass (all queued runs, clusters, quotas and recent usage:
~30 ms for 500 queued runs, ~0.35 s for 10,000), and dashboards poll queued runs. So a process
keeps its last plan and reuses it while nothing it was made from has changed: no run (the
version counter), no cluster and no quota, and for at most `PLAN_REUSE_SECONDS`, since time
alone moves starvation and fair-share windows. Any change made anywhere is seen at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Budget, Cluster, Quota, Run, VersionCounter, utcnow
from core.runs.schemas import SUBMITTED, QueueInfo, RunOut
from core.runs.service import get_run
from core.runs.states import RunStatus
from core.runs.versions import RUNS_COUNTER
from core.scheduling.eta import estimate_start
from core.scheduling.planner import Needs, Plan, QueueReason, Snapshot, plan_admissions
from core.scheduling.snapshot import load_snapshot
from core.settings import Settings
from core.tenants.schemas import Principal


def describe_run(session: Session, caller: Principal, run_id: str, settings: Settings) -> RunOut:
    """The run as `GET /v1/runs/{id}` shows it: with `queue` while it waits to start."""
    return with_queue(session, get_run(session, caller, run_id), settings, caller)


def with_queue(session: Session, run: Run, settings: Settings, caller: Principal) -> RunOut:
    """The run's document with its queue details (`explain`), as `caller` may see them."""
    queue = explain(session, run, settings, caller)
    return RunOut.model_validate(run).model_copy(update={"queue": queue})


def explain(session: Session, run: Run, settings: Settings, caller: Principal) -> QueueInfo | None:
    """Queue details for a pending or queued run, as `caller` may see them; None for any
    other status. The position counts only the runs the caller could read (its org's, or its
    project's for a scoped key); other tenants' runs ahead show in no number."""
    status = RunStatus(run.status)
    if status is RunStatus.PENDING:
        return SUBMITTED
    if status is not RunStatus.QUEUED:
        return None
    plan, snapshot = _current_plan(session, settings)
    position = plan.position(run.id, lambda owner: visible_to(caller, owner))
    blocker = plan.blocked.get(run.id)
    if blocker is None:
        detail = "it fits now; the scheduler's next pass starts it"
        return QueueInfo(position=position, reason=QueueReason.READY.value, detail=detail)
    eta = None
    if blocker.reason in {QueueReason.NO_CAPACITY, QueueReason.RESERVED}:
        eta = estimate_start(Needs.of(run.spec), snapshot)
    return QueueInfo(position=position, reason=blocker.reason.value, detail=blocker.detail, eta=eta)


def visible_to(caller: Principal, owner: tuple[str, str]) -> bool:
    """Whether `caller` may see a run of `owner` (org, project) in a queue position."""
    org_id, project_id = owner
    return org_id == caller.org_id and caller.project_id in (None, project_id)


PLAN_REUSE_SECONDS = 2.0
# What a plan is made of, besides time. Every change to a run (queued, admitted, ended, edited)
# moves the counter; clusters, quotas and budgets are counted too, so that a deleted row shows.
PLAN_INPUTS = select(
    select(VersionCounter.value).where(VersionCounter.name == RUNS_COUNTER).scalar_subquery(),
    select(func.count()).select_from(Cluster).scalar_subquery(),
    select(func.max(Cluster.updated_at)).scalar_subquery(),
    select(func.count()).select_from(Quota).scalar_subquery(),
    select(func.max(Quota.updated_at)).scalar_subquery(),
    select(func.count()).select_from(Budget).scalar_subquery(),
    select(func.max(Budget.updated_at)).scalar_subquery(),
)


@dataclass(frozen=True)
class _Kept:
    key: tuple[Any, ...]
    made_at: float
    plan: Plan
    snapshot: Snapshot  # as the plan left it: what is free after its admissions


_kept: _Kept | None = None
_lock = threading.Lock()  # one thread plans at a time; the others then reuse its plan


def _current_plan(session: Session, settings: Settings) -> tuple[Plan, Snapshot]:
    global _kept
    inputs = tuple(session.execute(PLAN_INPUTS).one())
    key = (
        str(session.get_bind().engine.url),
        settings.fair_share_window_hours,
        settings.scheduler_starvation_seconds,
        inputs,
    )
    with _lock:
        kept = _kept
        if kept is None or kept.key != key or time.monotonic() - kept.made_at > PLAN_REUSE_SECONDS:
            snapshot = load_snapshot(session, settings, utcnow())
            plan = plan_admissions(snapshot)
            kept = _kept = _Kept(key, time.monotonic(), plan, snapshot)
        return kept.plan, kept.snapshot
