"""Response models: what the API returns, as pydantic models that tolerate fields added later.

Every model allows extra fields, so a newer server never breaks an older client; enumerated
values (statuses, reasons, roles) are plain strings for the same reason, with the known values
as `StrEnum`s to compare against.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TrainportModel(BaseModel):
    """Base of every response model: unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, unknown fields included."""
        return self.model_dump(mode="json")


class RunStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class QueueInfo(TrainportModel):
    """Why a run that has not started is still waiting, and where it stands in the queue."""

    position: int | None = None
    reason: str = ""
    detail: str = ""
    eta: datetime | None = None  # estimated start, from running work's max_duration


class Attempt(TrainportModel):
    """One attempt of a run: where and when it ran, and how it ended (`outcome` None while it
    runs: `succeeded`, `failed`, `system_failed`, `preempted` or `cancelled` after)."""

    attempt: int
    cluster: str = ""
    where: str = ""
    gpus: int = 0
    gpu_type: str | None = None
    admitted_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    resumed_from_step: int | None = None
    steps_lost: int | None = None
    preempted_by: str | None = None  # the run whose admission stopped this attempt
    gpu_hours: float = 0.0
    cost: float = 0.0


class Progress(TrainportModel):
    """How far the run is, from its heartbeats."""

    step: int
    total_steps: int | None = None
    fraction: float | None = None


class GpuUsage(TrainportModel):
    gpu_hours: float = 0.0
    cost: float = 0.0


class RunUsage(GpuUsage):
    """GPU-hours (allocated GPUs x wall time) and their cost over all of a run's attempts."""

    currency: str = ""
    by_gpu_type: dict[str, GpuUsage] = Field(default_factory=dict)


class Run(TrainportModel):
    id: str
    object: str = "run"
    name: str
    project_id: str
    status: str
    status_reason: str | None = None
    status_message: str | None = None
    priority: str = "normal"
    attempt: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    spec: dict[str, Any] = Field(default_factory=dict)
    resource_version: int
    created_by: str | None = None
    created_at: datetime
    updated_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deleted: bool = False
    queue: QueueInfo | None = None
    attempts: list[Attempt] = Field(default_factory=list, description="oldest first")
    progress: Progress | None = None
    latest_metrics: dict[str, float] = Field(default_factory=dict)
    estimated_finish: datetime | None = None
    last_heartbeat_at: datetime | None = None
    warnings: list[str] = Field(
        default_factory=list, description="what the platform will not do as the spec asks"
    )
    cloned_from: str | None = None
    usage: RunUsage | None = None

    @property
    def is_terminal(self) -> bool:
        """Succeeded, failed or cancelled: the run will not change status again."""
        return self.status in TERMINAL_STATUSES

    @property
    def etag(self) -> str:
        """The run's entity tag, for `runs.update(..., if_match=run.etag)`."""
        return f'"{self.resource_version}"'


class RunPlan(TrainportModel):
    """What a submission would become (`runs.plan`): the resolved spec, the dataset versions
    it would pin, where it would run or what blocks it, what `max_duration` would cost, and on
    Kubernetes the objects the cluster would get (`manifests`; None for local processes)."""

    project_id: str
    spec: dict[str, Any] = Field(default_factory=dict)
    datasets: list[dict[str, Any]] = Field(default_factory=list)
    placement: dict[str, Any] = Field(default_factory=dict)
    estimate: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    manifests: list[dict[str, Any]] | None = None


class RunEvent(TrainportModel):
    """One entry of a run's history: a status change, an edit or a preemption (`data`)."""

    id: int
    run_id: str
    kind: str
    from_status: str | None = None
    to_status: str | None = None
    reason: str | None = None
    message: str | None = None
    resource_version: int
    actor: str | None = None
    created_at: datetime
    data: dict[str, Any] | None = None  # a preemption's `preempted_by`, for one


class LogLine(TrainportModel):
    """One line a run printed: when (RFC 3339, UTC), on which stream, and the text."""

    time: str = ""
    stream: str = ""
    text: str = ""
    attempt: int | None = None
    rank: int | None = None

    @property
    def timestamp(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.time) if self.time else None
        except ValueError:
            return None

    def __str__(self) -> str:
        return self.text


class Project(TrainportModel):
    id: str
    name: str
    description: str = ""
    created_at: datetime


class Secret(TrainportModel):
    """A secret as listed: name, scope and version, never the value (the API never returns it)."""

    name: str
    project_id: str | None = None  # None: org-wide
    version: int
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    updated_by: str | None = None


class WebhookEndpoint(TrainportModel):
    """A webhook endpoint; `secret` is set only in the answer to create and rotate-secret."""

    id: str
    url: str
    description: str = ""
    event_types: list[str] = []
    project_id: str | None = None
    enabled: bool
    disabled_reason: str | None = None
    consecutive_failures: int = 0
    created_at: datetime
    updated_at: datetime
    secret: str | None = None


class WebhookAttempt(TrainportModel):
    attempt: int
    succeeded: bool
    response_code: int | None = None
    latency_ms: int
    response_excerpt: str | None = None
    error: str | None = None
    started_at: datetime


class WebhookDelivery(TrainportModel):
    """One event for one endpoint; `id` is the `webhook-id` header of each of its attempts."""

    id: str
    endpoint_id: str
    event_type: str
    status: str  # pending, succeeded or failed
    attempts: int
    next_attempt_at: datetime | None = None
    response_code: int | None = None
    latency_ms: int | None = None
    response_excerpt: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any] | None = None  # in `deliveries.get` only
    attempt_log: list[WebhookAttempt] = []  # in `deliveries.get` only


class ApiKey(TrainportModel):
    """An API key as listed: prefix, role and use, never the secret."""

    id: str
    name: str
    role: str
    prefix: str
    project_id: str | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="the full key; returned only when the key is created")


class Organization(TrainportModel):
    id: str
    name: str
    created_at: datetime


class Me(TrainportModel):
    """Who is calling: the organisation and the API key of this client."""

    organization: Organization
    key: ApiKey
