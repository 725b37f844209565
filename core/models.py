"""The ORM schema. Alembic migrations are the only way these tables are created."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JSONDocument: JSON = JSON().with_variant(JSONB(), "postgresql")
ACTIVE_RUN_STATUSES = "status IN ('pending', 'queued', 'starting', 'running', 'stopping')"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone on the way in)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use core.models.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def result_processor(self, dialect: Dialect, coltype: object) -> _ResultProcessor | None:
        # SQLite keeps ISO 8601 text: one C call parses it, where SQLAlchemy's DateTime matched
        # a regular expression first (a tenth of a 200-run page's time; issue 17).
        if dialect.name == "sqlite":
            return _utc_from_text
        return super().result_processor(dialect, coltype)


_ResultProcessor = Callable[[Any], Any]


def _utc_from_text(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime, dict[str, Any]: JSONDocument}


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_projects_org_id_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_org_id_id", "org_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None
    )
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # Newest-first keyset pages: ids are ULIDs, so id order is creation order.
        Index("ix_runs_org_id_id", "org_id", "id"),
        Index("ix_runs_org_id_status_id", "org_id", "status", "id"),
        Index("ix_runs_project_id_id", "project_id", "id"),
        Index("ix_runs_org_id_name", "org_id", "name"),
        # The change feed: rows past a version, per org.
        Index("ix_runs_org_id_resource_version", "org_id", "resource_version"),
        # The scheduler's scan of queued runs (migration 0002).
        Index("ix_runs_status_queued_at", "status", "queued_at"),
        # /metrics: active runs by org, status and priority, from the index alone (0013).
        Index(
            "ix_runs_active",
            "status",
            "priority",
            "org_id",
            "queued_at",
            postgresql_where=text(ACTIVE_RUN_STATUSES),
            sqlite_where=text(ACTIVE_RUN_STATUSES),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(40), default=None)
    status_message: Mapped[str | None] = mapped_column(Text, default=None)
    priority: Mapped[str] = mapped_column(String(8))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    labels: Mapped[dict[str, Any]]
    resource_version: Mapped[int] = mapped_column(BigInteger, unique=True)
    created_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Deletion is a tombstone, so the change feed can tell dashboards a run went away.
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # The run this one was cloned from (`POST /v1/runs/{id}/clone`, migration 0014).
    cloned_from: Mapped[str | None] = mapped_column(String(40), default=None)
    # Loaded with the run (one extra IN query per batch), so every RunOut carries attempts[].
    attempts: Mapped[list[RunAttempt]] = relationship(
        lazy="selectin", order_by="RunAttempt.attempt", viewonly=True
    )
    # What the run's runtime last reported (heartbeats, metrics): RunOut's progress fields.
    training: Mapped[RunProgress | None] = relationship(lazy="selectin", viewonly=True)

    @property
    def progress(self) -> dict[str, Any] | None:
        return self.training.progress if self.training else None

    @property
    def latest_metrics(self) -> dict[str, float]:
        return self.training.latest_values if self.training else {}

    @property
    def estimated_finish(self) -> datetime | None:
        return self.training.estimated_finish if self.training else None

    @property
    def last_heartbeat_at(self) -> datetime | None:
        return self.training.last_heartbeat_at if self.training else None


class RunLabel(Base):
    """Labels again as rows, so a label selector is an index lookup rather than a JSON scan."""

    __tablename__ = "run_labels"
    __table_args__ = (Index("ix_run_labels_org_id_key_value", "org_id", "key", "value", "run_id"),)

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(317), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(63))


class RunEvent(Base):
    """Append-only history: one row per status change and per user-visible edit."""

    __tablename__ = "run_events"
    __table_args__ = (
        Index("ix_run_events_run_id_id", "run_id", "id"),
        # Event streams (migration 0013): the org's log and every org's, in version order.
        Index("ix_run_events_resource_version", "resource_version"),
        Index("ix_run_events_org_id_resource_version", "org_id", "resource_version"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    org_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(24))
    from_status: Mapped[str | None] = mapped_column(String(16), default=None)
    to_status: Mapped[str | None] = mapped_column(String(16), default=None)
    reason: Mapped[str | None] = mapped_column(String(40), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    resource_version: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Structured details (migration 0013): a preemption names its preemptor's run id here.
    data: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (Index("ix_idempotency_records_expires_at", "expires_at"),)

    org_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class VersionCounter(Base):
    """A named, strictly increasing counter (`runs` hands out every run's resource_version)."""

    __tablename__ = "version_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class Cluster(Base):
    """A place runs execute: its executor kind and what it holds (GPUs per type, CPU slots).

    The scheduler locks every cluster row for the length of an admission pass, which is what
    keeps two schedulers from handing out the same capacity (see core/scheduling/admission.py).
    """

    __tablename__ = "clusters"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    executor: Mapped[str] = mapped_column(String(32))
    # {"gpus": {"a100": 8}, "cpu_slots": 16 or null for unlimited, "nodes": 1}
    inventory: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What a Kubernetes cluster's /version said at registration (migration 0006), e.g. v1.31.2;
    # null for local clusters and before it was first read.
    server_version: Mapped[str | None] = mapped_column(String(64), default=None)


class Quota(Base):
    """Limits for an org (`project_id` = "") or for one of its projects; null means unlimited."""

    __tablename__ = "quotas"

    org_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(String(40), primary_key=True, default="")
    max_gpus: Mapped[int | None] = mapped_column(Integer, default=None)
    max_running_runs: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_by: Mapped[str | None] = mapped_column(String(40), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunAttempt(Base):
    """One attempt of a run: what it was granted, where it ran and how it ended.

    An attempt holds its grant (GPUs, CPU slots on `cluster`) from admission until `ended_at`,
    so the open attempts are the capacity and quota ledger, and closed ones the fair-share history.
    """

    __tablename__ = "run_attempts"
    __table_args__ = (
        Index("ix_run_attempts_ended_at", "ended_at"),
        Index("ix_run_attempts_org_id_admitted_at", "org_id", "admitted_at"),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))
    project_id: Mapped[str] = mapped_column(String(40))
    cluster: Mapped[str] = mapped_column(String(63))
    gpu_type: Mapped[str | None] = mapped_column(String(63), default=None)
    gpus: Mapped[int] = mapped_column(Integer, default=0)
    cpu_slots: Mapped[int] = mapped_column(Integer, default=0)
    admitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    outcome: Mapped[str | None] = mapped_column(String(16), default=None)
    exit_code: Mapped[int | None] = mapped_column(Integer, default=None)
    reason: Mapped[str | None] = mapped_column(String(40), default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    where: Mapped[str] = mapped_column(String(255), default="")
    # The runtime's view (migration 0003): the highest step it reported, the step it resumed
    # from, and the work lost since the previous attempt's last report.
    last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    resumed_from_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    steps_lost: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # The image digest the kubelet reported (pod status imageID), for provenance.
    image_digest: Mapped[str | None] = mapped_column(String(255), default=None)
    # Node-shaped gangs and preemption (migration 0013): the GPUs held on each node, and the
    # run this attempt is being stopped for (set when the scheduler picks it as a victim).
    placement: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    preempted_by: Mapped[str | None] = mapped_column(String(40), default=None)
    preempted_at: Mapped[datetime | None] = mapped_column(default=None)


class OutboxMessage(Base):
    """A task to publish, written in the same transaction as the change that calls for it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_unsent",
            "id",
            postgresql_where=text("sent_at IS NULL"),
            sqlite_where=text("sent_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    task: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A relay claims rows for a short lease, publishes outside the transaction, then marks them.
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class TaskDelivery(Base):
    """How often a task for (run, attempt) was delivered without finishing: bounds crash loops."""

    __tablename__ = "task_deliveries"

    task: Mapped[str] = mapped_column(String(100), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- training (migration 0003): metrics, progress, checkpoints, provenance --------------------


class MetricPoint(Base):
    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_run_id_name_step", "run_id", "name", "step"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Double)
    time: Mapped[float] = mapped_column(Double)


class RunProgress(Base):
    """The latest report of a run's runtime: step, total, heartbeat, last value per metric."""

    __tablename__ = "run_progress"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    total_steps: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # {name: [step, value]}: the value at the highest step seen per metric
    latest: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    # Where this attempt's step rate is measured from (for estimated_finish).
    rate_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    rate_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def progress(self) -> dict[str, Any] | None:
        if self.step is None:
            return None
        fraction = None
        if self.total_steps:
            fraction = min(max(self.step / self.total_steps, 0.0), 1.0)
        return {"step": self.step, "total_steps": self.total_steps, "fraction": fraction}

    @property
    def latest_values(self) -> dict[str, float]:
        return {name: float(pair[1]) for name, pair in (self.latest or {}).items()}

    @property
    def estimated_finish(self) -> datetime | None:
        """The last heartbeat plus the remaining steps at this attempt's step rate."""
        seen, since = self.last_heartbeat_at, self.rate_at
        if seen is None or since is None:
            return None
        if self.step is None or self.total_steps is None or self.rate_step is None:
            return None
        done = self.step - self.rate_step
        elapsed = (seen - since).total_seconds()
        if done <= 0 or elapsed <= 0:
            return None
        remaining = max(self.total_steps - self.step, 0)
        return seen + timedelta(seconds=remaining * elapsed / done)


class Checkpoint(Base):
    """A committed checkpoint the runtime registered: one per (run, step)."""

    __tablename__ = "checkpoints"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))
    attempt: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(255))
    files: Mapped[list[Any]] = mapped_column(JSONDocument)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunProvenance(Base):
    """The part of a run's provenance record frozen when it first starts."""

    __tablename__ = "run_provenance"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))
    record: Mapped[dict[str, Any]]
    frozen_at: Mapped[datetime] = mapped_column(default=utcnow)


class CodeSnapshot(Base):
    """An org's code, content-addressed: an uploaded working folder or a packed git commit.

    `digest` is `sha256:<hex>` of the archive's bytes as stored, computed by the API (or the
    worker that packed a git commit), never taken from a client."""

    __tablename__ = "code_snapshots"
    __table_args__ = (Index("ix_code_snapshots_org_id_git", "org_id", "git_url", "git_commit"),)

    org_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(255))
    origin: Mapped[str] = mapped_column(String(16))  # "upload" or "git"
    git_url: Mapped[str | None] = mapped_column(String(512), default=None)
    git_commit: Mapped[str | None] = mapped_column(String(64), default=None)
    created_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- run logs (migration 0007) ----------------------------------------------------------


class LogStream(Base):
    """One rank's log of one attempt: its head, locked by each append (core/log_archive.py).

    `size` is the bytes stored in its chunks; `cursor` is where its writer's source stands (a
    spool file's byte offset, or a pod log's last timestamp), so a restarted writer resumes
    there and an append from a stale writer is refused instead of stored twice. No foreign key:
    a writer may ship a rank's log before or after its run row is visible; `delete_run` and
    retention remove them.
    """

    __tablename__ = "log_streams"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    cursor: Mapped[str] = mapped_column(String(64), default="")
    finished: Mapped[bool] = mapped_column(default=False)
    truncated: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LogChunk(Base):
    """Whole lines of one rank's log, stored at byte offset `start` (chunks are contiguous)."""

    __tablename__ = "log_chunks"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lines: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


# -- bring your own code (migration 0009) ---------------------------------------------


class RunOutput(Base):
    """A file of a run's `outputs`, uploaded when its attempt ended: one per (attempt, path)."""

    __tablename__ = "run_outputs"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LogMetricCursor(Base):
    """How far `metrics.from_logs` has parsed one rank's log (bytes of whole lines)."""

    __tablename__ = "log_metric_cursors"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)


class EventFileCursor(Base):
    """How far `metrics.tensorboard_dir` has imported one event file (bytes of whole records)."""

    __tablename__ = "event_file_cursors"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)


# The rooms' own tables, defined beside their code and re-exported here (one metadata).
from core.datasets.models import Dataset, DatasetVersion, RunDataset  # noqa: E402
from core.secrets.models import RunSecret  # noqa: E402
from core.usage.models import Budget, BudgetAlert, UsageDaily  # noqa: E402
from core.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint  # noqa: E402

__all__ = [
    "Budget",
    "BudgetAlert",
    "Dataset",
    "DatasetVersion",
    "RunDataset",
    "RunSecret",
    "UsageDaily",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
