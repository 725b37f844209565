"""What clients see of the event log: one event, and a JSON page of them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from core.runs.states import RunStatus


class EventOut(BaseModel):
    """One event of the org's log, as a JSON page or an SSE message's `data` shows it."""

    id: int
    run_id: str
    project_id: str
    run_name: str
    kind: str
    from_status: RunStatus | None
    to_status: RunStatus | None
    reason: str | None
    message: str | None
    resource_version: int
    actor: str | None
    created_at: datetime


class EventPage(BaseModel):
    object: str = "list"
    data: list[EventOut]
    has_more: bool
    resource_version: int = Field(description="pass as `since` to read on from here")
