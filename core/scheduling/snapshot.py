"""Reads the state a plan needs: queued runs, free capacity, quota scopes, recent usage and
spent budgets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.models import Cluster, RunAttempt
from core.runs import attempts
from core.scheduling import repository
from core.scheduling.clusters import Inventory, list_clusters
from core.scheduling.planner import (
    HELD_GPU_CHARGE_SECONDS,
    Candidate,
    ClusterState,
    Needs,
    Owner,
    Scope,
    Snapshot,
)
from core.settings import Settings
from core.usage import budgets
from core.usage.rates import RateCard


def load_snapshot(
    session: Session, settings: Settings, now: datetime, clusters: Sequence[Cluster] | None = None
) -> Snapshot:
    held = attempts.open_attempts(session)
    return Snapshot(
        candidates=[
            Candidate(
                row.id,
                row.org_id,
                row.project_id,
                row.priority,
                row.queued_at or now,
                Needs.of(row.spec),
            )
            for row in repository.queued_runs(session)
        ],
        clusters=free_capacity(clusters if clusters is not None else list_clusters(session), held),
        scopes=quota_scopes(session, held),
        usage=recent_usage(session, now, timedelta(hours=settings.fair_share_window_hours)),
        now=now,
        starvation_seconds=settings.scheduler_starvation_seconds,
        budget_exhausted=budgets.exhausted_scopes(session, now, RateCard.of(settings)),
    )


def total_capacity(clusters: Sequence[Cluster]) -> list[ClusterState]:
    return free_capacity(clusters, ())


def free_capacity(clusters: Sequence[Cluster], held: Sequence[RunAttempt]) -> list[ClusterState]:
    states = {}
    for cluster in clusters:
        inventory = Inventory.from_document(cluster.inventory)
        states[cluster.name] = ClusterState(
            cluster.name, inventory.nodes, dict(inventory.gpus), inventory.cpu_slots
        )
    for grant in held:
        state = states.get(grant.cluster)
        if state is None:
            continue
        if grant.gpus and grant.gpu_type is not None:
            state.free_gpus[grant.gpu_type] = state.free_gpus.get(grant.gpu_type, 0) - grant.gpus
        if grant.cpu_slots and state.free_slots is not None:
            state.free_slots -= grant.cpu_slots
    return list(states.values())


def quota_scopes(session: Session, held: Sequence[RunAttempt]) -> dict[Owner, Scope]:
    """A scope for every quota row, with what its org (or project) holds now."""
    rows = repository.quotas(session)
    orgs = repository.org_names(session, sorted({q.org_id for q in rows}))
    projects = repository.project_names(session, sorted({q.project_id for q in rows} - {""}))
    scopes = {}
    for quota in rows:
        label = (
            f"project {projects.get(quota.project_id, quota.project_id)}"
            if quota.project_id
            else f"org {orgs.get(quota.org_id, quota.org_id)}"
        )
        scopes[(quota.org_id, quota.project_id)] = Scope(
            label, quota.max_gpus, quota.max_running_runs
        )
    for grant in held:
        for key in ((grant.org_id, ""), (grant.org_id, grant.project_id)):
            if key in scopes:
                scopes[key].gpus += grant.gpus
                scopes[key].runs += 1
    return scopes


def recent_usage(session: Session, now: datetime, window: timedelta) -> dict[Owner, float]:
    """GPU-seconds inside the window per org and per project, plus the charge for held GPUs."""
    since = now - window
    usage: dict[Owner, float] = defaultdict(float)
    for attempt in attempts.usage_since(session, since):
        end = min(attempt.ended_at or now, now)
        seconds = max(0.0, (end - max(attempt.admitted_at, since)).total_seconds())
        weight = attempt.gpus * seconds
        if attempt.ended_at is None:
            weight += attempt.gpus * HELD_GPU_CHARGE_SECONDS
        usage[(attempt.org_id, "")] += weight
        usage[(attempt.org_id, attempt.project_id)] += weight
    return usage
