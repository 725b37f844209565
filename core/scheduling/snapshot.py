"""Reads the state a plan needs: queued runs, free capacity, quota scopes, recent usage and
spent budgets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.models import Cluster, RunAttempt
from core.runs import attempts
from core.scheduling import repository
from core.scheduling.clusters import Inventory, list_clusters
from core.scheduling.placement import spread_unplaced
from core.scheduling.planner import (
    HELD_GPU_CHARGE_SECONDS,
    Candidate,
    ClusterState,
    Needs,
    Owner,
    Scope,
    Snapshot,
)
from core.scheduling.preemption import Holding
from core.settings import Settings
from core.usage import budgets
from core.usage.rates import RateCard


def load_snapshot(
    session: Session, settings: Settings, now: datetime, clusters: Sequence[Cluster] | None = None
) -> Snapshot:
    rows = repository.holdings(session)
    held: list[RunAttempt] = [row[0] for row in rows]
    finishes = repository.estimated_finishes(session) if held else {}
    states = free_capacity(clusters if clusters is not None else list_clusters(session), held)
    return Snapshot(
        candidates=[
            Candidate(
                row.id,
                row.org_id,
                row.project_id,
                row.priority,
                row.queued_at or now,
                Needs.of({"compute": row.compute}),
                (row.scheduling or {}).get("max_pending"),
            )
            for row in repository.queued_runs(session)
        ],
        clusters=states,
        scopes=quota_scopes(session, held),
        usage=recent_usage(session, now, timedelta(hours=settings.fair_share_window_hours)),
        now=now,
        starvation_seconds=settings.scheduler_starvation_seconds,
        holdings=[_holding(*row, finishes.get(row[0].run_id)) for row in rows],
        budget_exhausted=budgets.exhausted_scopes(session, now, RateCard.of(settings)),
    )


def _holding(
    attempt: RunAttempt,
    priority: str,
    scheduling: Any,
    started_at: datetime | None,
    estimated_finish: datetime | None,
) -> Holding:
    """An open attempt for preemption and the ETA: it ends, at the latest, when its
    max_duration runs out, or sooner when its progress says so."""
    limit = (scheduling or {}).get("max_duration")
    ends_at = started_at + timedelta(seconds=float(limit)) if started_at and limit else None
    if estimated_finish is not None:
        ends_at = min(ends_at, estimated_finish) if ends_at else estimated_finish
    return Holding(
        attempt.run_id,
        attempt.org_id,
        attempt.project_id,
        priority,
        bool((scheduling or {}).get("preemptible", False)),
        attempt.admitted_at,
        attempt.cluster,
        attempt.gpu_type,
        attempt.gpus,
        attempt.cpu_slots,
        {str(node): int(gpus) for node, gpus in (attempt.placement or {}).items()},
        attempt.preempted_by,
        attempt.attempt,
        ends_at,
    )


def total_capacity(clusters: Sequence[Cluster]) -> list[ClusterState]:
    return free_capacity(clusters, ())


def free_capacity(clusters: Sequence[Cluster], held: Sequence[RunAttempt]) -> list[ClusterState]:
    """Each cluster's free capacity, node by node: its inventory less every open grant."""
    states = {}
    for cluster in clusters:
        inventory = Inventory.from_document(cluster.inventory)
        node_free: dict[str, dict[str, int]] = defaultdict(dict)
        for node, gpus in inventory.node_gpus.items():
            for gpu_type, count in gpus.items():
                node_free[gpu_type][node] = count
        states[cluster.name] = ClusterState(
            cluster.name,
            inventory.nodes,
            dict(inventory.gpus),
            inventory.cpu_slots,
            dict(node_free),
        )
    for grant in held:
        state = states.get(grant.cluster)
        if state is None:
            continue
        placement = dict(grant.placement or {})
        if grant.gpus and grant.gpu_type is not None and not placement:
            placement = spread_unplaced(state.node_free.get(grant.gpu_type, {}), grant.gpus)
        state.take(grant.gpu_type, placement, grant.cpu_slots)
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
