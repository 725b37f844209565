"""The scheduler pass: accept pending runs into the queue, then admit what fits.

Accepting a run pins the dataset versions its spec references (core/datasets/pinning.py); a
reference that resolves to nothing fails the run with `dataset_unavailable`.

Admission never over-commits a quota or a cluster, even with several schedulers racing: a pass
first locks every cluster row (`SELECT ... FOR UPDATE`, in name order), then reads the ledger
(the open attempts), plans, and writes its grants before it commits. A second pass waits on the
locks and, once it has them, reads a ledger that includes the first pass's grants (READ
COMMITTED takes a fresh snapshot per statement). Grants only ever grow under these locks;
finishing attempts only shrink them, so every committed state stays within every limit. On
SQLite, `BEGIN IMMEDIATE` makes the whole pass the single writer anyway.

Run rows are locked with SKIP LOCKED just before their transition, so a pass never waits on
(or deadlocks with) a request that is cancelling one of them; a skipped run waits a pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from core import outbox
from core.datasets.pinning import pin_datasets
from core.executor_kinds import ExecutorKind
from core.models import Run, RunAttempt, utcnow
from core.runs import events
from core.runs.attempts import Grant, open_attempt
from core.runs.schemas import LOCAL_IMAGE_WARNING
from core.runs.states import RunStatus, StatusReason, record_event, transition
from core.runs.time_limits import over_queue_limit
from core.scheduling import repository
from core.scheduling.clusters import list_clusters, lock_clusters
from core.scheduling.planner import Candidate, Needs, fits_anywhere, plan_admissions
from core.scheduling.preemption import Preemption
from core.scheduling.snapshot import load_snapshot, total_capacity
from core.settings import LocalImagePolicy, Settings
from core.usage import budgets
from core.usage.rates import RateCard
from core.webhooks import events as webhook_events

ACCEPT_BATCH = 1000


@dataclass(frozen=True)
class Admitted:
    run_id: str
    attempt: int
    cluster: str


def accept_pending(session: Session, run_ids: Sequence[str] | None = None) -> int:
    """Move pending runs into the queue, or fail those no registered cluster could ever hold."""
    clusters = total_capacity(list_clusters(session))
    accepted = 0
    for run in repository.lock_runs(session, RunStatus.PENDING, run_ids, ACCEPT_BATCH):
        why = fits_anywhere(Needs.of(run.spec), clusters) if clusters else None
        unpinned = pin_datasets(session, run) if why is None else None
        if unpinned is not None:
            transition(session, run, RunStatus.FAILED, StatusReason.DATASET_UNAVAILABLE, unpinned)
        elif why is None:
            transition(
                session,
                run,
                RunStatus.QUEUED,
                StatusReason.QUEUED_FOR_CAPACITY,
                "accepted into the queue",
            )
            accepted += 1
        else:
            transition(session, run, RunStatus.FAILED, StatusReason.UNSCHEDULABLE, why)
    return accepted


def admit_queued_runs(
    session: Session, settings: Settings, now: datetime | None = None
) -> list[Admitted]:
    """One admission pass. Each admitted run is `starting` with a new attempt and a launch task;
    each preemption victim's attempt is marked, for the reconciler to stop."""
    clusters = lock_clusters(session)
    now = now or utcnow()
    # Budget alerts ride on the pass (every few seconds): each crossing is recorded once.
    budgets.record_alerts(session, now, RateCard.of(settings))
    snapshot = load_snapshot(session, settings, now, clusters)
    expired = expire_queued_runs(session, snapshot.candidates, snapshot.now)
    if expired:
        snapshot.candidates = [c for c in snapshot.candidates if c.run_id not in expired]
    plan = plan_admissions(snapshot)
    for preemption in plan.preemptions:
        mark_victims(session, preemption, settings.preemption_grace_seconds)
    if not plan.admitted:
        return []
    grants = {candidate.run_id: (candidate, grant) for candidate, grant in plan.admitted}
    locked = {run.id: run for run in repository.lock_runs(session, RunStatus.QUEUED, list(grants))}
    local = {cluster.name for cluster in clusters if cluster.executor == ExecutorKind.LOCAL}
    admitted = []
    for run_id in plan.order:
        if run_id not in locked or run_id not in grants:
            continue
        run, (candidate, grant) = locked[run_id], grants[run_id]
        if not _image_allowed(session, settings, run, grant.cluster in local):
            continue
        admitted.append(_admit(session, run, candidate, grant))
    return admitted


def _image_allowed(session: Session, settings: Settings, run: Run, local: bool) -> bool:
    """The local executor runs no image: a run naming one is marked (a warning event, and the
    run's `warnings`), or refused where the operator says so (TRAINPORT_LOCAL_IMAGE_POLICY)."""
    if not (local and run.spec.get("image")):
        return True
    if settings.local_image_policy is LocalImagePolicy.REFUSE:
        message = f"{LOCAL_IMAGE_WARNING}; this platform refuses such runs (remove `image`)"
        transition(session, run, RunStatus.FAILED, StatusReason.SPEC_REFUSED, message)
        return False
    events.emit_for(session, run, events.EventKind.WARNING, message=LOCAL_IMAGE_WARNING)
    return True


def expire_queued_runs(
    session: Session, candidates: Sequence[Candidate], now: datetime
) -> set[str]:
    """Fail the queued runs past their `scheduling.max_pending` with `pending_timeout`."""
    overdue = {
        candidate.run_id: why
        for candidate in candidates
        if candidate.max_pending
        and (
            why := over_queue_limit(
                {"max_pending": candidate.max_pending}, candidate.queued_at, now
            )
        )
    }
    if not overdue:
        return set()
    for run in repository.lock_runs(session, RunStatus.QUEUED, list(overdue)):
        transition(session, run, RunStatus.FAILED, StatusReason.PENDING_TIMEOUT, overdue[run.id])
    return set(overdue)


def _admit(session: Session, run: Run, candidate: Candidate, grant: Grant) -> Admitted:
    where = f"{grant.gpus} x {grant.gpu_type} on {grant.cluster}" if grant.gpus else grant.cluster
    transition(
        session,
        run,
        RunStatus.STARTING,
        StatusReason.LAUNCHING,
        f"admitted: {where}",
        next_attempt=True,
    )
    # Stamped after the ledger was read: an admission is later than every release it relied on.
    open_attempt(session, run, grant, utcnow())
    outbox.enqueue(session, outbox.Task.LAUNCH, run_id=run.id, attempt=run.attempt)
    return Admitted(run.id, run.attempt, grant.cluster)


def mark_victims(session: Session, preemption: Preemption, grace_seconds: float) -> int:
    """Mark each victim's open attempt as preempted by `preemption.run_id` (guarded: an attempt
    that ended or was already marked is left alone) and say so in both runs' events."""
    marked = []
    now = utcnow()
    for victim in preemption.victims:
        result = session.execute(
            update(RunAttempt)
            .where(
                RunAttempt.run_id == victim.run_id,
                RunAttempt.attempt == victim.attempt,
                RunAttempt.ended_at.is_(None),
                RunAttempt.preempted_by.is_(None),
            )
            .values(preempted_by=preemption.run_id, preempted_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            marked.append(victim.run_id)
            message = (
                f"preempted by {preemption.run_id} (higher priority); stopping after a "
                f"{grace_seconds:g}s checkpoint grace"
            )
            data = {"preempted_by": preemption.run_id, "attempt": victim.attempt}
            record_event(
                session, victim.run_id, victim.org_id, events.EventKind.PREEMPTION, message, data
            )
            victim_run = session.get(Run, victim.run_id)
            if victim_run is not None:  # webhooks say who preempted whom (issue 20)
                webhook_events.run_preempted(session, victim_run, victim.attempt, preemption.run_id)
    if marked:
        preemptor = session.get(Run, preemption.run_id)
        if preemptor is not None:
            message = f"preempting {', '.join(marked)} on {preemption.cluster}"
            data = {"preempting": marked, "cluster": preemption.cluster}
            record_event(
                session, preemptor.id, preemptor.org_id, events.EventKind.PREEMPTION, message, data
            )
    session.flush()
    return len(marked)
