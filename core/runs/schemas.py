"""Run documents the API returns and the edits it accepts (the spec itself is in spec.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.executor_kinds import LOCAL_CLUSTER
from core.models import utcnow
from core.runs.spec import Duration, Labels, Priority
from core.runs.states import RunStatus, StatusReason
from core.usage import rates
from core.usage.metering import gpu_seconds
from core.usage.schemas import GpuUsage, RunUsage

LOCAL_IMAGE_WARNING = (
    "spec.image is not used on the local executor: the command runs as processes on the host, "
    "so the provenance record marks the image as not used"
)


def local_image_warning(spec: dict[str, Any], local_only: bool) -> list[str]:
    """The warning a run gets when it names an image that its executor will not run."""
    return [LOCAL_IMAGE_WARNING] if spec.get("image") and local_only else []


class QueueInfo(BaseModel):
    """Why a run that has not started is still waiting."""

    position: int | None = None
    reason: str
    detail: str
    eta: datetime | None = Field(
        default=None,
        description="estimated start: when enough running work ends by its max_duration "
        "(and progress) to make room; null when nothing running says when it ends",
    )


# A pending run's queue needs no plan: the scheduler has not accepted it yet. (The other
# answers come from the scheduler's plan, core/scheduling/explain.py; `submitted` is
# `QueueReason.SUBMITTED`, a test keeps them equal.)
SUBMITTED = QueueInfo(
    position=None,
    reason="submitted",
    detail="submitted; the scheduler accepts it into the queue at its next pass",
)


class AttemptOut(BaseModel):
    """One attempt of a run: when and where it ran, and how it ended."""

    model_config = ConfigDict(from_attributes=True)

    attempt: int
    cluster: str
    where: str = Field(description="cluster, then host or node names once it ran")
    gpus: int
    gpu_type: str | None
    admitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    outcome: str | None = Field(
        description="succeeded, failed, system_failed, preempted or cancelled"
    )
    exit_code: int | None
    reason: str | None
    message: str | None
    preempted_by: str | None = Field(
        default=None, description="the run whose admission stopped this attempt (preemption)"
    )
    resumed_from_step: int | None = Field(
        default=None, description="the checkpoint step this attempt resumed from"
    )
    steps_lost: int | None = Field(
        default=None, description="the previous attempt's last step minus the resumed step"
    )
    gpu_hours: float = Field(
        default=0.0, description="gpus x (ended_at, or now while it runs, - started_at)"
    )
    cost: float = Field(default=0.0, description="gpu_hours at the operator's rate for gpu_type")

    @model_validator(mode="after")
    def _metered(self) -> AttemptOut:
        if not self.gpus:
            return self  # no GPU, no GPU-hours: the defaults (most runs of a page; issue 17)
        # Live: a running attempt's hours grow with every read (ETags follow resource_version).
        seconds = gpu_seconds(self.gpus, self.started_at, self.ended_at, utcnow())
        self.gpu_hours = rates.hours(seconds)
        self.cost = rates.current().cost(self.gpu_type, self.gpu_hours)
        return self


class Progress(BaseModel):
    step: int
    total_steps: int | None
    fraction: float | None


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    object: str = "run"
    name: str
    project_id: str
    status: RunStatus
    status_reason: StatusReason | None
    status_message: str | None
    priority: Priority
    attempt: int
    labels: dict[str, str]
    spec: dict[str, Any]
    resource_version: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    deleted: bool = Field(default=False, description="true only in the change feed, for tombstones")
    queue: QueueInfo | None = None
    attempts: list[AttemptOut] = Field(default_factory=list)
    progress: Progress | None = Field(default=None, description="from the run's heartbeats")
    latest_metrics: dict[str, float] = Field(
        default_factory=dict, description="each metric's value at its highest step"
    )
    estimated_finish: datetime | None = Field(
        default=None, description="at this attempt's step rate"
    )
    last_heartbeat_at: datetime | None = None
    cloned_from: str | None = Field(default=None, description="the run this one was cloned from")
    usage: RunUsage | None = Field(
        default=None, description="GPU-hours and cost over all attempts (live while one runs)"
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="what the platform will not do as the spec asks, e.g. run spec.image on "
        "the local executor",
    )

    @model_validator(mode="after")
    def _derived(self) -> RunOut:
        """The run's usage over its attempts, and a warning for an image it does not run in."""
        self.usage = run_usage(self.attempts)
        ran_locally = any(a.cluster == LOCAL_CLUSTER for a in self.attempts)
        for warning in local_image_warning(self.spec, ran_locally):
            if warning not in self.warnings:
                self.warnings.append(warning)
        return self


def run_usage(attempts: list[AttemptOut]) -> RunUsage:
    """A run's usage: its attempts' metered hours and costs, summed per GPU type.

    Constructed, not validated: every figure is a float computed here from validated attempts
    (validating them again was a tenth of a 200-run page's time; issue 17).
    """
    by_type: dict[str, GpuUsage] = {}
    for attempt in attempts:
        if not attempt.gpus:
            continue
        name = attempt.gpu_type or ""
        seen = by_type.get(name)
        hours, cost = (seen.gpu_hours, seen.cost) if seen is not None else (0.0, 0.0)
        by_type[name] = GpuUsage.model_construct(
            gpu_hours=rates.tidy_hours(hours + attempt.gpu_hours),
            cost=rates.money(cost + attempt.cost),
        )
    return RunUsage.model_construct(
        gpu_hours=rates.tidy_hours(sum(u.gpu_hours for u in by_type.values())),
        cost=rates.money(sum(u.cost for u in by_type.values())),
        currency=rates.current().currency,
        by_gpu_type=by_type,
    )


class RunPage(BaseModel):
    object: str = "list"
    data: list[RunOut]
    has_more: bool
    next_cursor: str | None = None
    resource_version: int | None = Field(
        default=None, description="with changed_since: the version to ask from next time"
    )


class RunPatch(BaseModel):
    """The fields of a run that may change after submission."""

    model_config = ConfigDict(extra="forbid")

    priority: Priority | None = None
    max_duration: Duration | None = Field(default=None, description="'12h' or seconds")
    labels: Labels | None = None


class RunEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    run_id: str
    kind: str
    from_status: RunStatus | None
    to_status: RunStatus | None
    reason: str | None
    message: str | None
    resource_version: int
    actor: str | None
    created_at: datetime
    data: dict[str, Any] | None = Field(
        default=None, description="details: a preemption names `preempted_by` (a run id)"
    )


class RunEventPage(BaseModel):
    object: str = "list"
    data: list[RunEventOut]
    has_more: bool
    next_cursor: str | None = None
