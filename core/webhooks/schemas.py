"""Webhook shapes at the API boundary: event types, endpoints, deliveries and their attempts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from core.runs.spec import StrictModel


class EventType(StrEnum):
    """Every event a webhook endpoint can receive (`event_types` filters by these)."""

    RUN_CREATED = "run.created"
    RUN_STATUS_CHANGED = "run.status_changed"  # every status change, with its reason
    RUN_FINISHED = "run.finished"  # succeeded, failed or cancelled
    ATTEMPT_STARTED = "attempt.started"
    ATTEMPT_ENDED = "attempt.ended"
    CHECKPOINT_COMMITTED = "checkpoint.committed"
    RUN_PREEMPTED = "run.preempted"  # chosen as a victim: `data.preempted_by` names the run
    BUDGET_THRESHOLD_REACHED = "budget.threshold_reached"  # 80% or 100% of a budget spent
    ENDPOINT_DISABLED = "webhook.endpoint_disabled"
    PING = "webhook.ping"  # only ever sent by `POST /v1/webhooks/{id}/ping`


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # due now or at next_attempt_at
    SUCCEEDED = "succeeded"  # the receiver answered 2xx
    FAILED = "failed"  # retried for webhook_retry_for_hours without a 2xx


class EndpointCreate(StrictModel):
    url: HttpUrl = Field(description="http(s) URL that receives the POSTs; a public address")
    description: str = Field(default="", max_length=500)
    event_types: list[EventType] = Field(
        default_factory=list, description="the events to send; empty: every event"
    )
    project: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="only this project's events (name or id); omitted: the whole org",
    )


class EndpointUpdate(StrictModel):
    url: HttpUrl | None = None
    description: str | None = Field(default=None, max_length=500)
    event_types: list[EventType] | None = None
    enabled: bool | None = Field(
        default=None, description="false pauses deliveries; true resumes a disabled endpoint"
    )


class EndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    description: str
    event_types: list[str]
    project_id: str | None
    enabled: bool
    disabled_reason: str | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    """Returned once, by create and rotate: the secret is never shown again."""

    secret: str = Field(description="the signing secret (`whsec_...`); store it now")


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    succeeded: bool
    response_code: int | None
    latency_ms: int
    response_excerpt: str | None
    error: str | None
    started_at: datetime


class DeliveryOut(BaseModel):
    """One event for one endpoint; `id` is the `webhook-id` header of every attempt."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    endpoint_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    response_code: int | None
    latency_ms: int | None
    response_excerpt: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime


class DeliveryDetail(DeliveryOut):
    payload: dict[str, object]
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    has_more: bool
    next_cursor: str | None
