"""The run lifecycle: statuses, reasons, legal transitions, and the one function that moves a run.

Nothing else in the codebase assigns `Run.status`. `transition()` is a guarded UPDATE
(`WHERE id = :id AND status = :expected`) that also bumps the run's resource_version and appends
a RunEvent in the same transaction, so history, change feed and status never disagree; the
same transaction queues the change's webhook deliveries (core/webhooks/events.py).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from core.errors import Conflict, IllegalTransition
from core.models import Run, utcnow
from core.runs import events
from core.runs.versions import claim_resource_version
from core.telemetry import RUNS_FINISHED
from core.webhooks import events as webhook_events


class RunStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


class StatusReason(StrEnum):
    """Why a run is in its status; kept apart from the status so both stay small enums."""

    SUBMITTED = "submitted"
    QUEUED_FOR_CAPACITY = "queued_for_capacity"
    LAUNCHING = "launching"
    RUNNING = "running"
    USER_CANCELLED = "user_cancelled"
    COMPLETED = "completed"
    EXIT_CODE_NONZERO = "exit_code_nonzero"
    OOM_KILLED = "oom_killed"  # the kernel's OOM killer (cgroup memory.events, OOMKilled)
    KILLED = "killed"  # SIGKILL from anyone but the OOM killer
    IMAGE_PULL_FAILED = "image_pull_failed"
    SPEC_REFUSED = "spec_refused"  # the executor cannot run the spec as written
    UNSCHEDULABLE = "unschedulable"
    EVICTED = "evicted"
    PREEMPTED = "preempted"
    NODE_LOST = "node_lost"
    DELETED_EXTERNALLY = "deleted_externally"  # the attempt's objects were deleted by others
    MAX_DURATION_EXCEEDED = "max_duration_exceeded"
    PENDING_TIMEOUT = "pending_timeout"  # the cluster did not start the attempt in max_pending
    COMMAND_CANNOT_START = "command_cannot_start"  # not found or not executable: the user's
    HUNG = "hung"  # no heartbeat for scheduling.hang_timeout while running: the platform's
    RETRYING = "retrying"
    SYSTEM_ERROR = "system_error"
    DATASET_UNAVAILABLE = "dataset_unavailable"  # a data.datasets reference resolved to nothing


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})

# Every legal edge. A retry goes back to `queued` with the next attempt.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.QUEUED, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.QUEUED: frozenset({RunStatus.STARTING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.STARTING: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.STOPPING,
            RunStatus.QUEUED,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
        }
    ),
    RunStatus.RUNNING: frozenset(
        {RunStatus.STOPPING, RunStatus.QUEUED, RunStatus.SUCCEEDED, RunStatus.FAILED}
    ),
    RunStatus.STOPPING: frozenset({RunStatus.CANCELLED, RunStatus.SUCCEEDED, RunStatus.FAILED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}


class TransitionLost(Conflict):
    """Another writer moved the run first: the guarded UPDATE matched no row."""

    def __init__(self, run_id: str, expected: RunStatus) -> None:
        super().__init__(
            f"Run {run_id} is no longer {expected.value}; it was changed concurrently. "
            "Reload it and try again.",
            code="concurrent_change",
        )


def can_transition(current: RunStatus, to: RunStatus) -> bool:
    return to in TRANSITIONS[current]


def _timestamps(to: RunStatus, now: datetime) -> dict[str, datetime]:
    if to is RunStatus.QUEUED:
        return {"queued_at": now}
    if to is RunStatus.RUNNING:
        return {"started_at": now}
    if to.is_terminal:
        return {"finished_at": now}
    return {}


def transition(
    session: Session,
    run: Run,
    to: RunStatus,
    reason: StatusReason,
    message: str | None = None,
    *,
    actor: str | None = None,
    next_attempt: bool = False,
    data: dict[str, object] | None = None,
) -> Run:
    """Move `run` to `to`, or raise IllegalTransition (forbidden edge) or TransitionLost (a race).

    `next_attempt` starts a new attempt (used on the way to `starting`); `data` goes on the
    event (a preemption's `preempted_by`).
    """
    current = RunStatus(run.status)
    if not can_transition(current, to):
        raise IllegalTransition(f"Run {run.id} cannot go from {current.value} to {to.value}.")
    now = utcnow()
    values: dict[str, object] = {
        "status": to.value,
        "status_reason": reason.value,
        "status_message": message,
        "updated_at": now,
        "attempt": run.attempt + 1 if next_attempt else run.attempt,
        **_timestamps(to, now),
    }
    # Lock order is always the run row first, the version counter second (as in every API
    # write), so a transition racing a cancel cannot deadlock; a lost race never takes the
    # counter at all.
    result = session.execute(
        update(Run)
        .where(Run.id == run.id, Run.status == current.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise TransitionLost(run.id, current)
    values["resource_version"] = version = claim_resource_version(session, run.id)
    session.execute(
        update(Run)
        .where(Run.id == run.id)
        .values(resource_version=version)
        .execution_options(synchronize_session=False)
    )
    events.emit_for(
        session,
        run,
        events.EventKind.STATUS,
        from_status=current.value,
        to_status=to.value,
        reason=reason.value,
        message=message,
        resource_version=version,
        actor=actor,
        created_at=now,
        data=data,
    )
    if to.is_terminal:  # counted as made; a rollback after this is rare and not uncounted
        RUNS_FINISHED.labels(to.value, reason.value).inc()
    # Mirror the UPDATE on the loaded object without marking it dirty (no second write).
    for name, value in values.items():
        set_committed_value(run, name, value)
    session.flush()
    webhook_events.status_changed(session, run, current.value, reason.value, message, version)
    return run


def record_event(
    session: Session,
    run_id: str,
    org_id: str,
    kind: events.EventKind,
    message: str,
    data: dict[str, object] | None = None,
) -> None:
    """A history row that is not a status change (a preemption decision), at the run's current
    resource_version: the run itself did not change."""
    version = session.scalar(select(Run.resource_version).where(Run.id == run_id))
    row = events.event_row(
        run_id, org_id, kind, resource_version=int(version or 0), message=message, data=data
    )
    events.emit(session, row)
