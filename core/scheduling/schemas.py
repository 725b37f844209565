"""Quota documents: what an admin sets, and what members see (limits beside current usage)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.storable import INTEGER


class QuotaIn(BaseModel):
    """The body of `PUT .../quota`. A missing or null limit means unlimited."""

    model_config = ConfigDict(extra="forbid")

    max_gpus: Annotated[int, Field(ge=0, le=1_000_000), *INTEGER] | None = Field(
        default=None, description="GPUs at once"
    )
    max_running_runs: Annotated[int, Field(ge=0, le=1_000_000), *INTEGER] | None = Field(
        default=None, description="runs starting, running or stopping at once"
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
