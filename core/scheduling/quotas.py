"""Quota rules: admins of an org set its limits (org-wide or per project); members read them.

Another org's quota is exactly as missing as an org that does not exist (404), so ids leak
nothing. A limit left out or null means unlimited.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Quota, utcnow
from core.scheduling import repository
from core.scheduling.schemas import OrgQuotaOut, QuotaIn, QuotaOut, QuotaUsage
from core.tenants import service as tenants
from core.tenants.schemas import Principal, Role


def _own_org(caller: Principal, org_id: str) -> None:
    if org_id != caller.org_id:
        raise NotFound(f"Organisation {org_id} was not found.")


def get_quota(session: Session, caller: Principal, org_id: str) -> OrgQuotaOut:
    _own_org(caller, org_id)
    rows = {q.project_id: q for q in repository.quotas(session, org_id)}
    held = repository.held_by(session, org_id)
    org = _out(org_id, None, rows.get(""), _usage(held.values()))
    projects = [
        _out(org_id, project_id, quota, _usage([held.get(project_id, (0, 0))]))
        for project_id, quota in rows.items()
        if project_id and caller.project_id in (None, project_id)
    ]
    return OrgQuotaOut(**org.model_dump(), projects=projects)


def set_quota(
    session: Session, caller: Principal, org_id: str, body: QuotaIn, project: str | None = None
) -> QuotaOut:
    """Replace the org's (or one project's) limits; takes effect at the next scheduler pass."""
    _own_org(caller, org_id)
    caller.require(Role.ADMIN)
    project_id = tenants.resolve_project(session, caller, project).id if project else ""
    quota = _quota_row(session, org_id, project_id)
    quota.max_gpus, quota.max_running_runs = body.max_gpus, body.max_running_runs
    quota.updated_by, quota.updated_at = caller.key_id, utcnow()
    session.flush()
    held = repository.held_by(session, org_id)
    usage = _usage([held.get(project_id, (0, 0))] if project_id else held.values())
    return _out(org_id, project_id or None, quota, usage)


def _quota_row(session: Session, org_id: str, project_id: str) -> Quota:
    quota = repository.get_quota(session, org_id, project_id)
    if quota is not None:
        return quota
    try:
        with session.begin_nested():
            quota = Quota(org_id=org_id, project_id=project_id, updated_at=utcnow())
            session.add(quota)
        return quota
    except IntegrityError:  # a concurrent PUT created it first; update that row
        return _quota_row(session, org_id, project_id)


def _usage(held: Iterable[tuple[int, int]]) -> QuotaUsage:
    pairs = list(held)
    return QuotaUsage(gpus=sum(p[0] for p in pairs), running_runs=sum(p[1] for p in pairs))


def _out(org_id: str, project_id: str | None, quota: Quota | None, usage: QuotaUsage) -> QuotaOut:
    return QuotaOut(
        org_id=org_id,
        project_id=project_id,
        max_gpus=quota.max_gpus if quota else None,
        max_running_runs=quota.max_running_runs if quota else None,
        usage=usage,
        updated_at=quota.updated_at if quota else None,
    )
