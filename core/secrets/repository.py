"""Queries over run secrets; every one is scoped by org id."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import RunSecret


def get(session: Session, org_id: str, project_id: str, name: str) -> RunSecret | None:
    return session.scalars(
        select(RunSecret).where(
            RunSecret.org_id == org_id, RunSecret.project_id == project_id, RunSecret.name == name
        )
    ).first()


def list_for(session: Session, org_id: str, project_ids: list[str] | None) -> list[RunSecret]:
    """The org's secrets; with `project_ids`, only those scopes ("" is org-wide)."""
    query = select(RunSecret).where(RunSecret.org_id == org_id)
    if project_ids is not None:
        query = query.where(RunSecret.project_id.in_(project_ids))
    return list(session.scalars(query.order_by(RunSecret.name, RunSecret.project_id)))


def for_launch(session: Session, org_id: str, project_id: str, names: list[str]) -> list[RunSecret]:
    """The rows a run of `project_id` may use for `names`: its project's and the org-wide ones."""
    return list(
        session.scalars(
            select(RunSecret).where(
                RunSecret.org_id == org_id,
                RunSecret.project_id.in_([project_id, ""]),
                RunSecret.name.in_(names),
            )
        )
    )


def scopes_and_names(session: Session, org_id: str) -> list[tuple[str, str]]:
    """(project_id, name) of every secret of the org: what exists, without any ciphertext."""
    rows = session.execute(
        select(RunSecret.project_id, RunSecret.name).where(RunSecret.org_id == org_id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def all_rows(session: Session) -> list[RunSecret]:
    """Every secret of every org, locked: only for re-encrypting under a new key."""
    return list(session.scalars(select(RunSecret).order_by(RunSecret.id).with_for_update()))
