"""Tenant rules: bootstrapping an org, authenticating keys, managing keys and projects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from core.ids import new_id
from core.models import ApiKey, Organization, Project, utcnow
from core.tenants import keys, repository
from core.tenants.schemas import ApiKeyCreate, KeyState, Principal, ProjectCreate, Role

if TYPE_CHECKING:  # asyncpg only where the API runs on PostgreSQL, not in every worker
    from core.aio import AsyncDatabase

DEFAULT_PROJECT = "default"
ORG_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Bootstrapped:
    org: Organization
    project: Project
    key: ApiKey
    secret: str


def bootstrap(session: Session, org_name: str, key_name: str = "bootstrap-admin") -> Bootstrapped:
    """Create an organisation with a `default` project and its first admin key."""
    if not ORG_NAME.match(org_name) or len(org_name) > 63:
        raise InvalidInput(
            f"Organisation name {org_name!r} must be a DNS label: 1-63 lower-case letters, "
            "digits and '-'."
        )
    if repository.get_org_by_name(session, org_name) is not None:
        raise Conflict(f"Organisation {org_name!r} already exists.", code="already_exists")
    org = Organization(id=new_id("org"), name=org_name)
    session.add(org)
    session.flush()
    project = Project(id=new_id("prj"), org_id=org.id, name=DEFAULT_PROJECT, description="")
    session.add(project)
    session.flush()
    key, secret = _new_key(org.id, key_name, Role.ADMIN, None, None, None)
    session.add(key)
    session.flush()
    return Bootstrapped(org, project, key, secret)


def refuse_another_org(session: Session, why_only_one: str | None) -> None:
    """Where this platform may hold one organisation only (`why_only_one`), refuse a second."""
    if why_only_one is not None and repository.any_org(session):
        raise Conflict(why_only_one, code="single_organisation")


def _new_key(
    org_id: str,
    name: str,
    role: Role,
    project_id: str | None,
    expires_in_days: int | None,
    created_by: str | None,
) -> tuple[ApiKey, str]:
    secret = keys.mint_key()
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    key = ApiKey(
        id=new_id("key"),
        org_id=org_id,
        project_id=project_id,
        name=name,
        role=role.value,
        digest=keys.digest(secret),
        prefix=keys.display_prefix(secret),
        expires_at=expires_at,
        created_by=created_by,
    )
    return key, secret


def authenticate(
    bind: Session | Connection, secret: str | None, touch_interval_s: int
) -> Principal:
    """The caller behind a presented key. Every failure reads the same, so nothing leaks."""
    key = repository.key_state(bind, presented_digest(secret))
    return accept_key(bind, key, touch_interval_s)


async def authenticate_async(
    db: AsyncDatabase, secret: str | None, touch_interval_s: int
) -> Principal:
    """`authenticate` on the event loop (PostgreSQL, core/aio.py)."""
    rows = await db.fetch(repository.KEY_STATE, {"digest": presented_digest(secret)})
    key = KeyState(*(rows[0][name] for name in repository.KEY_STATE_COLUMNS)) if rows else None
    return await accept_key_async(db, key, touch_interval_s)


async def accept_key_async(
    db: AsyncDatabase, key: KeyState | None, touch_interval_s: int
) -> Principal:
    """`accept_key` on the event loop."""
    caller, touch = judge_key(key, touch_interval_s)
    if touch is not None:
        await db.fetch(touch, {}, cache=False)
    return caller


def presented_digest(secret: str | None) -> str:
    """The digest to look a presented secret up by; Unauthenticated when it cannot be a key."""
    if not secret or not keys.looks_like_key(secret):
        raise Unauthenticated()
    return keys.digest(secret)


def accept_key(
    bind: Session | Connection, key: KeyState | None, touch_interval_s: int
) -> Principal:
    """The caller a looked-up key stands for, judged now: revoked or expired keys never pass.

    Its use is recorded at most once per `touch_interval_s` (few writes).
    """
    caller, touch = judge_key(key, touch_interval_s)
    if touch is not None:
        bind.execute(touch)
    return caller


def judge_key(key: KeyState | None, touch_interval_s: int) -> tuple[Principal, Update | None]:
    """`accept_key`'s rule, for callers that run the returned touch themselves (core/aio.py)."""
    now = utcnow()
    if key is None or key.revoked_at is not None or (key.expires_at and key.expires_at <= now):
        raise Unauthenticated()
    touch = None
    stale_before = now - timedelta(seconds=touch_interval_s)
    if key.last_used_at is None or key.last_used_at < stale_before:
        touch = repository.touch_key_statement(key.id, now, stale_before)
    caller = Principal(
        org_id=key.org_id, key_id=key.id, role=Role(key.role), project_id=key.project_id
    )
    return caller, touch


def create_key(session: Session, caller: Principal, body: ApiKeyCreate) -> tuple[ApiKey, str]:
    """Mint an API key in the caller's org (admins): its row and its secret, shown once."""
    caller.require(Role.ADMIN)
    project_id = resolve_project(session, caller, body.project).id if body.project else None
    key, secret = _new_key(
        caller.org_id, body.name, body.role, project_id, body.expires_in_days, caller.key_id
    )
    session.add(key)
    session.flush()
    return key, secret


def list_keys(session: Session, caller: Principal) -> list[ApiKey]:
    """Every API key of the caller's org (admins)."""
    caller.require(Role.ADMIN)
    return repository.list_keys(session, caller.org_id)


def revoke_key(session: Session, caller: Principal, key_id: str) -> ApiKey:
    """Revoke a key; revoking twice is fine (the first revocation time stays)."""
    caller.require(Role.ADMIN)
    key = repository.get_key(session, caller.org_id, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} was not found.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def current_key(session: Session, caller: Principal) -> tuple[Organization, ApiKey]:
    """The caller's org and key rows; 401 when either was deleted since authentication."""
    org = repository.get_org(session, caller.org_id)
    key = repository.get_key(session, caller.org_id, caller.key_id)
    if org is None or key is None:  # deleted between authentication and now
        raise Unauthenticated()
    return org, key


def resolve_project(session: Session, caller: Principal, name_or_id: str | None) -> Project:
    """The project a request means: the named one, else the key's scope, else `default`."""
    wanted = wanted_project(caller, name_or_id)
    project = repository.find_project(session, caller.org_id, wanted)
    judge_project(caller, wanted, project.id if project is not None else None)
    assert project is not None  # judge_project raised otherwise
    return project


def wanted_project(caller: Principal, name_or_id: str | None) -> str:
    """The project a request names, else the key's own project, else the default one."""
    return name_or_id or caller.project_id or DEFAULT_PROJECT


def judge_project(caller: Principal, wanted: str, found_id: str | None) -> None:
    """`resolve_project`'s rule, for callers that looked the project up themselves."""
    if found_id is None:
        raise NotFound(f"Project {wanted!r} was not found.")
    if caller.project_id is not None and found_id != caller.project_id:
        raise Forbidden("This API key is limited to another project.")


def list_projects(session: Session, caller: Principal) -> list[Project]:
    """The caller's org's projects (only its own for a project-scoped key)."""
    return repository.list_projects(session, caller.org_id, only=caller.project_id)


def create_project(session: Session, caller: Principal, body: ProjectCreate) -> Project:
    """Create a project in the caller's org (admins); 409 when the name is taken."""
    caller.require(Role.ADMIN)
    project = Project(
        id=new_id("prj"), org_id=caller.org_id, name=body.name, description=body.description
    )
    try:
        with session.begin_nested():
            session.add(project)
    except IntegrityError:
        raise Conflict(f"Project {body.name!r} already exists.", code="already_exists") from None
    return project
