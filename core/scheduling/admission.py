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

from sqlalchemy.orm import Session

from core import outbox
from core.datasets.pinning import pin_datasets
from core.executor_kinds import ExecutorKind
from core.models import Run, utcnow
from core.runs import events
from core.runs.attempts import Grant, open_attempt
from core.runs.schemas import LOCAL_IMAGE_WARNING
from core.runs.states import RunStatus, StatusReason, transition
from core.scheduling import repository
from core.scheduling.clusters import list_clusters, lock_clusters
from core.scheduling.planner import Candidate, Needs, fits_anywhere, plan_admissions
from core.scheduling.snapshot import load_snapshot, total_capacity
from core.settings import LocalImagePolicy, Settings

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
    """One admission pass. Each admitted run is `starting` with a new attempt and a launch task."""
    clusters = lock_clusters(session)
    snapshot = load_snapshot(session, settings, now or utcnow(), clusters)
    plan = plan_admissions(snapshot)
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
