"""Queries over organisations, projects and API keys; every one is scoped by org id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Update, bindparam, or_, select, update
from sqlalchemy.orm import Session

from core.models import ApiKey, Organization, Project
from core.tenants.schemas import KeyState


def get_org(session: Session, org_id: str) -> Organization | None:
    return session.get(Organization, org_id)


def any_org(session: Session) -> bool:
    return session.scalars(select(Organization.id).limit(1)).first() is not None


def get_org_by_name(session: Session, name: str) -> Organization | None:
    return session.scalars(select(Organization).where(Organization.name == name)).first()


def find_project(session: Session, org_id: str, name_or_id: str) -> Project | None:
    return session.scalars(
        select(Project).where(
            Project.org_id == org_id, or_(Project.id == name_or_id, Project.name == name_or_id)
        )
    ).first()


# `find_project`'s lookup for the event-loop reads (core/runs/reads.py): the id alone.
PROJECT_ID = (
    select(Project.id)
    .where(
        Project.org_id == bindparam("org_id"),
        or_(Project.id == bindparam("wanted"), Project.name == bindparam("wanted")),
    )
    .limit(1)
)


def list_projects(session: Session, org_id: str, only: str | None = None) -> list[Project]:
    query = select(Project).where(Project.org_id == org_id)
    if only is not None:
        query = query.where(Project.id == only)
    return list(session.scalars(query.order_by(Project.name)))


# What authenticating reads of a key: columns, not an ORM object (it happens on every request).
KEY_STATE_COLUMNS = (
    "id",
    "org_id",
    "role",
    "project_id",
    "revoked_at",
    "expires_at",
    "last_used_at",
)
KEY_STATE = select(*(getattr(ApiKey, name) for name in KEY_STATE_COLUMNS)).where(
    ApiKey.digest == bindparam("digest")
)


def key_state(bind: Session | Connection, key_digest: str) -> KeyState | None:
    row = bind.execute(KEY_STATE, {"digest": key_digest}).first()
    return KeyState(*row) if row is not None else None


def get_key(session: Session, org_id: str, key_id: str) -> ApiKey | None:
    return session.scalars(
        select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.id == key_id)
    ).first()


def list_keys(session: Session, org_id: str) -> list[ApiKey]:
    return list(
        session.scalars(select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.id.desc()))
    )


def touch_key_statement(key_id: str, now: datetime, stale_before: datetime) -> Update:
    """Record a use, but only when the last one is older than `stale_before` (few writes).

    Returned, to run on the caller's own connection (sync, or core/aio.py's). Best effort: when
    another request's transaction is already touching the key, skip rather than wait for it, so
    one slow transaction never stalls every request made with that key.
    """
    free = (
        select(ApiKey.id).where(ApiKey.id == key_id).with_for_update(skip_locked=True)
    ).scalar_subquery()
    return (
        update(ApiKey)
        .where(
            ApiKey.id == free,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < stale_before),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
