"""Usage and budget documents: a run's GPU-hours and cost, the usage report, budgets."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class GpuUsage(BaseModel):
    gpu_hours: float = Field(description="allocated GPUs x wall time, in hours")
    cost: float = Field(description="gpu_hours x the operator's rate for the GPU type")


class RunUsage(GpuUsage):
    """What a run has used so far, over all its attempts (live while one runs)."""

    currency: str
    by_gpu_type: dict[str, GpuUsage] = Field(default_factory=dict)


class GroupBy(StrEnum):
    PROJECT = "project"
    GPU_TYPE = "gpu_type"
    DAY = "day"


class UsageRow(GpuUsage):
    key: str = Field(description="the project id, the GPU type or the day (YYYY-MM-DD)")
    project_id: str | None = None
    project: str | None = Field(default=None, description="the project's name")
    gpu_type: str | None = None
    day: date | None = None


class UsageReport(BaseModel):
    object: str = "usage"
    org_id: str
    project_id: str | None = Field(description="set when a project-scoped key asked")
    from_: date = Field(alias="from", description="first UTC day counted")
    to: date = Field(description="first UTC day not counted")
    group_by: GroupBy
    currency: str
    total: GpuUsage
    data: list[UsageRow]

    model_config = ConfigDict(populate_by_name=True)


class BudgetUnit(StrEnum):
    CURRENCY = "currency"  # cost in TRAINPORT_CURRENCY at TRAINPORT_GPU_HOUR_RATES
    GPU_HOURS = "gpu_hours"


class BudgetPeriod(StrEnum):
    MONTHLY = "monthly"  # calendar months, UTC
    TOTAL = "total"  # everything ever used by the scope


class Enforcement(StrEnum):
    SOFT = "soft"  # alerts at 80% and 100%
    HARD = "hard"  # alerts, and no new admissions at 100%


class BudgetIn(BaseModel):
    """The body of `PUT .../budget`."""

    model_config = ConfigDict(extra="forbid")

    amount: float = Field(gt=0, le=1e12, description="the limit, in `unit`")
    unit: BudgetUnit = BudgetUnit.CURRENCY
    period: BudgetPeriod = BudgetPeriod.MONTHLY
    enforcement: Enforcement = Enforcement.SOFT


class BudgetOut(BaseModel):
    object: str = "budget"
    id: str
    org_id: str
    project_id: str | None = Field(description="null for the org-wide budget")
    amount: float
    unit: BudgetUnit
    period: BudgetPeriod
    enforcement: Enforcement
    currency: str | None = Field(description="the currency of `amount` when unit is currency")
    period_start: date = Field(description="the first day of the current period")
    spent: float = Field(description="used in the current period, in `unit` (live)")
    fraction: float = Field(description="spent / amount")
    exhausted: bool = Field(description="spent >= amount: a hard budget admits nothing more")
    updated_at: datetime


class BudgetList(BaseModel):
    object: str = "list"
    data: list[BudgetOut]


class BudgetAlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    budget_id: str
    org_id: str
    project_id: str
    period_start: date
    threshold: int = Field(description="percent of the budget reached: 80 or 100")
    spent: float
    amount: float
    unit: str
    enforcement: str
    created_at: datetime


class BudgetAlertList(BaseModel):
    object: str = "list"
    data: list[BudgetAlertOut]
