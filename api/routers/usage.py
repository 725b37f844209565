"""`/v1/orgs/{org_id}/usage` and budgets: GPU-hours and cost over time, and limits on them."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from api.deps import Caller, SessionDep, SettingsDep
from api.routing import UnitOfWorkRoute
from core.usage import budgets, service
from core.usage.rates import RateCard
from core.usage.schemas import (
    BudgetAlertList,
    BudgetIn,
    BudgetList,
    BudgetOut,
    GroupBy,
    UsageReport,
)

router = APIRouter(prefix="/v1/orgs/{org_id}", tags=["usage"], route_class=UnitOfWorkRoute)
OrgId = Annotated[str, Path(min_length=1, max_length=64, description="your org's id, `org_...`")]
ProjectRef = Annotated[str, Path(min_length=1, max_length=63, description="project name or id")]


async def get_rate_card(settings: SettingsDep) -> RateCard:
    return RateCard.of(settings)


Rates = Annotated[RateCard, Depends(get_rate_card)]


@router.get("/usage", response_model=UsageReport, response_model_by_alias=True)
def get_usage(
    org_id: OrgId,
    caller: Caller,
    session: SessionDep,
    card: Rates,
    from_: Annotated[
        date | None, Query(alias="from", description="first UTC day; default: this month's 1st")
    ] = None,
    to: Annotated[
        date | None, Query(description="first UTC day not counted; default: tomorrow")
    ] = None,
    group_by: GroupBy = GroupBy.PROJECT,
) -> Response:
    """GPU-hours and cost per project, GPU type or day (admin; a project key: its project)."""
    report = service.usage_report(session, caller, org_id, from_, to, group_by, card)
    # Serialized once, here (a year by day is 366 rows); `response_model` documents it.
    return Response(report.model_dump_json(by_alias=True), media_type="application/json")


@router.get("/budgets", response_model=BudgetList)
def list_budgets(org_id: OrgId, caller: Caller, session: SessionDep, card: Rates) -> BudgetList:
    """The org's budgets with this period's spend (admin)."""
    return budgets.list_budgets(session, caller, org_id, card)


@router.get("/budget-alerts", response_model=BudgetAlertList)
def list_budget_alerts(
    org_id: OrgId,
    caller: Caller,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> BudgetAlertList:
    """Budgets that reached 80% or 100% of their amount, newest first (admin)."""
    return budgets.list_alerts(session, caller, org_id, limit)


@router.get("/budget", response_model=BudgetOut)
def get_budget(org_id: OrgId, caller: Caller, session: SessionDep, card: Rates) -> BudgetOut:
    """The org-wide budget and this period's spend (admin)."""
    return budgets.get_budget(session, caller, org_id, card)


@router.put("/budget", response_model=BudgetOut)
def set_budget(
    org_id: OrgId, body: BudgetIn, caller: Caller, session: SessionDep, card: Rates
) -> BudgetOut:
    """Set the org-wide budget (admin): `soft` alerts, `hard` also stops admission at 100%."""
    return budgets.set_budget(session, caller, org_id, body, card)


@router.delete("/budget", status_code=status.HTTP_204_NO_CONTENT)
def delete_budget(org_id: OrgId, caller: Caller, session: SessionDep) -> Response:
    """Remove the org-wide budget (admin)."""
    budgets.delete_budget(session, caller, org_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/projects/{project}/budget", response_model=BudgetOut)
def get_project_budget(
    org_id: OrgId, project: ProjectRef, caller: Caller, session: SessionDep, card: Rates
) -> BudgetOut:
    """One project's budget and this period's spend (admin)."""
    return budgets.get_budget(session, caller, org_id, card, project)


@router.put("/projects/{project}/budget", response_model=BudgetOut)
def set_project_budget(
    org_id: OrgId,
    project: ProjectRef,
    body: BudgetIn,
    caller: Caller,
    session: SessionDep,
    card: Rates,
) -> BudgetOut:
    """Set one project's budget (admin); it applies beside the org's."""
    return budgets.set_budget(session, caller, org_id, body, card, project)


@router.delete("/projects/{project}/budget", status_code=status.HTTP_204_NO_CONTENT)
def delete_project_budget(
    org_id: OrgId, project: ProjectRef, caller: Caller, session: SessionDep
) -> Response:
    """Remove one project's budget (admin)."""
    budgets.delete_budget(session, caller, org_id, project)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
