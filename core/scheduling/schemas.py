"""Quota documents: what an admin sets, and what members see (limits beside current usage)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class QuotaIn(BaseModel):
    """The body of `PUT .../quota`. A missing or null limit means unlimited."""

    model_config = ConfigDict(extra="forbid")

    max_gpus: StrictInt | None = Field(default=None, ge=0, le=1_000_000, description="GPUs at once")
    max_running_runs: StrictInt | None = Field(
        default=None, ge=0, le=1_000_000, description="runs starting, running or stopping at once"
    )


class QuotaUsage(BaseModel):
    gpus: int
    running_runs: int


class QuotaOut(BaseModel):
    object: str = "quota"
    org_id: str
    project_id: str | None = Field(description="null for the org-wide quota")
    max_gpus: int | None
    max_running_runs: int | None
    usage: QuotaUsage
    updated_at: datetime | None


class OrgQuotaOut(QuotaOut):
    projects: list[QuotaOut] = Field(description="quotas of single projects, where set")
