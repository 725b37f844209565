"""`/v1/orgs/{org_id}/quota`: an org's limits on GPUs and running runs, beside its usage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import Caller, SessionDep
from api.routing import UnitOfWorkRoute
from core.scheduling import quotas
from core.scheduling.schemas import OrgQuotaOut, QuotaIn, QuotaOut

router = APIRouter(prefix="/v1/orgs/{org_id}", tags=["quotas"], route_class=UnitOfWorkRoute)
OrgId = Annotated[str, Path(min_length=1, max_length=64, description="your org's id, `org_...`")]
ProjectRef = Annotated[str, Path(min_length=1, max_length=63, description="project name or id")]


@router.get("/quota", response_model=OrgQuotaOut)
def get_quota(org_id: OrgId, caller: Caller, session: SessionDep) -> OrgQuotaOut:
    """The org's quota and current usage, and every per-project quota (any key of the org)."""
    return quotas.get_quota(session, caller, org_id)


@router.put("/quota", response_model=QuotaOut)
def set_quota(org_id: OrgId, body: QuotaIn, caller: Caller, session: SessionDep) -> QuotaOut:
    """Replace the org-wide limits (admin). Null or missing means unlimited."""
    return quotas.set_quota(session, caller, org_id, body)


@router.put("/projects/{project}/quota", response_model=QuotaOut)
def set_project_quota(
    org_id: OrgId, project: ProjectRef, body: QuotaIn, caller: Caller, session: SessionDep
) -> QuotaOut:
    """Replace one project's limits (admin); they apply on top of the org's."""
    return quotas.set_quota(session, caller, org_id, body, project)
