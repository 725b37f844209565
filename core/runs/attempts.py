"""Attempt records, and what an attempt's end means for its run (retry, or a final status).

An attempt is opened when the scheduler admits the run and holds its grant until it is closed:
the open attempts are the capacity and quota ledger, the closed ones the run's `attempts[]` and
the fair-share history. Retries: a platform failure (process lost, worker died) goes back to
the queue up to `system_retry_limit` times when the spec allows it, without touching the
user's `max_retries`; a failure of the user's code retries only within `max_retries` (and
only for the exit codes `retried_exit_code` allows). A preempted attempt goes back to the
queue without touching either budget. A failure
that no retry can cure (`NEVER_RETRIED`: the image cannot be pulled, the executor refused the
spec, the command cannot start) ends the run at once, whatever `max_retries` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.models import Run, RunAttempt, utcnow
from core.runs.states import RunStatus, StatusReason, transition
from core.usage import rollup


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the user's code failed: counts against max_retries
    SYSTEM_FAILED = "system_failed"  # the platform failed: its own retry budget
    PREEMPTED = "preempted"  # stopped for a higher-priority run: back to the queue, no budget
    CANCELLED = "cancelled"


# Reasons that the same spec would meet again on every attempt: retrying only burns capacity and
# hides the error from the user behind a queue.
NEVER_RETRIED = frozenset(
    {StatusReason.IMAGE_PULL_FAILED, StatusReason.SPEC_REFUSED, StatusReason.COMMAND_CANNOT_START}
)


@dataclass(frozen=True)
class Grant:
    """What an admitted attempt holds until it ends."""

    cluster: str
    gpu_type: str | None
    gpus: int
    cpu_slots: int
    placement: dict[str, int] = field(default_factory=dict)  # node -> GPUs (GPU grants)


@dataclass(frozen=True)
class Ending:
    """How an attempt ended, as the executor saw it."""

    outcome: AttemptOutcome
    reason: StatusReason
    message: str
    exit_code: int | None = None
    where: str = ""
    image_digest: str = ""
    preempted_by: str = ""  # the run it made room for (outcome PREEMPTED)


METERED_COLUMNS = (
    RunAttempt.org_id,
    RunAttempt.project_id,
    RunAttempt.gpu_type,
    RunAttempt.gpus,
    RunAttempt.started_at,
    RunAttempt.ended_at,
)


def open_attempt(session: Session, run: Run, grant: Grant, now: datetime) -> RunAttempt:
    """Record attempt `run.attempt` (already advanced by the transition) with its grant."""
    record = RunAttempt(
        run_id=run.id,
        attempt=run.attempt,
        org_id=run.org_id,
        project_id=run.project_id,
        cluster=grant.cluster,
        gpu_type=grant.gpu_type,
        gpus=grant.gpus,
        cpu_slots=grant.cpu_slots,
        placement=dict(grant.placement) or None,
        admitted_at=now,
        where=grant.cluster,
    )
    session.add(record)
    return record


def mark_started(
    session: Session, run_id: str, attempt: int, where: str = "", image_digest: str = ""
) -> None:
    """Record that the attempt's processes exist (first call wins), where they run and the
    image the cluster reports they run."""
    key = (RunAttempt.run_id == run_id, RunAttempt.attempt == attempt)
    session.execute(
        update(RunAttempt)
        .where(*key, RunAttempt.started_at.is_(None))
        .values(started_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    seen = {"where": where[:255]} if where else {}
    if image_digest:
        seen["image_digest"] = image_digest[:255]
    if seen:
        session.execute(
            update(RunAttempt)
            .where(*key)
            .values(**seen)
            .execution_options(synchronize_session=False)
        )


def close_attempt(session: Session, run_id: str, attempt: int, ending: Ending) -> None:
    """End the attempt and give back its grant. Closing twice keeps the first ending."""
    values = {
        "ended_at": utcnow(),
        "outcome": ending.outcome.value,
        "reason": ending.reason.value,
        "message": ending.message,
        "exit_code": ending.exit_code,
    } | ({"where": ending.where[:255]} if ending.where else {})
    if ending.image_digest:
        values["image_digest"] = ending.image_digest[:255]
    closed = session.execute(
        update(RunAttempt)
        .where(
            RunAttempt.run_id == run_id,
            RunAttempt.attempt == attempt,
            RunAttempt.ended_at.is_(None),
        )
        .values(**values)
        .returning(*METERED_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    # In the same transaction: GPU usage is rolled up exactly once per ended attempt.
    rollup.add_ended(session, [rollup.Metered(*row) for row in closed])


def open_attempts(session: Session) -> Sequence[RunAttempt]:
    """Every grant held right now: the ledger the scheduler admits against."""
    return session.scalars(select(RunAttempt).where(RunAttempt.ended_at.is_(None))).all()


def usage_since(session: Session, since: datetime) -> Sequence[RunAttempt]:
    """GPU attempts that overlap (since, now]: the fair-share history."""
    return session.scalars(
        select(RunAttempt).where(
            RunAttempt.gpus > 0,
            (RunAttempt.ended_at.is_(None)) | (RunAttempt.ended_at > since),
        )
    ).all()


def _count(session: Session, run_id: str, outcome: AttemptOutcome) -> int:
    query = select(func.count()).where(
        RunAttempt.run_id == run_id, RunAttempt.outcome == outcome.value
    )
    return int(session.scalar(query) or 0)


def settle(session: Session, run: Run, ending: Ending, system_retry_limit: int) -> RunStatus:
    """Close the run's current attempt with `ending` and move the run on: retry or finish.

    The caller holds the run's row lock. A stopping run ends cancelled whatever its processes did.
    """
    close_attempt(session, run.id, run.attempt, ending)
    status = RunStatus(run.status)
    if status is RunStatus.STOPPING:
        transition(
            session, run, RunStatus.CANCELLED, StatusReason.USER_CANCELLED, run.status_message
        )
    elif ending.outcome is AttemptOutcome.SUCCEEDED:
        transition(session, run, RunStatus.SUCCEEDED, StatusReason.COMPLETED, ending.message)
    elif ending.outcome is AttemptOutcome.PREEMPTED:
        data: dict[str, object] = {"preempted_by": ending.preempted_by, "attempt": run.attempt}
        transition(
            session, run, RunStatus.QUEUED, StatusReason.PREEMPTED, ending.message, data=data
        )
    elif _may_retry(session, run, ending, system_retry_limit):
        message = f"attempt {run.attempt} ended ({ending.reason.value}: {ending.message}); retrying"
        transition(session, run, RunStatus.QUEUED, StatusReason.RETRYING, message)
    else:
        transition(session, run, RunStatus.FAILED, ending.reason, ending.message)
    return RunStatus(run.status)


def _may_retry(session: Session, run: Run, ending: Ending, system_retry_limit: int) -> bool:
    scheduling = run.spec.get("scheduling") or {}
    if ending.reason in NEVER_RETRIED:
        return False
    if ending.outcome is AttemptOutcome.SYSTEM_FAILED:
        allowed = bool(scheduling.get("retry_on_system_failure", True))
        used = _count(session, run.id, AttemptOutcome.SYSTEM_FAILED)
        return allowed and used <= system_retry_limit
    if ending.outcome is AttemptOutcome.FAILED:
        used = _count(session, run.id, AttemptOutcome.FAILED)
        return retried_exit_code(scheduling, ending.exit_code) and used <= int(
            scheduling.get("max_retries", 0)
        )
    return False


def retried_exit_code(scheduling: dict[str, Any], exit_code: int | None) -> bool:
    """The one exit-code rule, for every executor: a code in `no_retry_exit_codes` is never
    retried; when `retry_on_exit_codes` is set, only the codes it lists are (within
    `max_retries`). Without either, every failure may be retried."""
    if exit_code is not None and exit_code in (scheduling.get("no_retry_exit_codes") or []):
        return False
    listed = scheduling.get("retry_on_exit_codes") or []
    return not listed or exit_code in listed
