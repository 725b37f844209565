"""`/v1/secrets`: an org's secret values for runs (`{secret: NAME}`), write-only.

Admins create, rotate (PUT) and delete values, org-wide or for one project (`project`); any key
of the org lists names and versions. No route returns a value.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import Caller, SessionDep, SettingsDep
from api.routing import UnitOfWorkRoute
from core.secrets import service
from core.secrets.schemas import (
    MAX_SECRET_NAME,
    SECRET_NAME_PATTERN,
    SecretCreate,
    SecretOut,
    SecretUpdate,
)

router = APIRouter(prefix="/v1/secrets", tags=["secrets"], route_class=UnitOfWorkRoute)
SecretName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_SECRET_NAME,
        pattern=SECRET_NAME_PATTERN,
        description="the name runs use in `{secret: NAME}`",
    ),
]
ProjectQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=63, description="project name or id; omitted: the org-wide one"),
]


@router.get("", response_model=list[SecretOut])
def list_secrets(
    caller: Caller, session: SessionDep, project: ProjectQuery = None
) -> list[SecretOut]:
    """Names, scopes and versions of the org's secrets (any key); never a value."""
    return [service.to_out(row) for row in service.list_secrets(session, caller, project)]


@router.post("", response_model=SecretOut, status_code=status.HTTP_201_CREATED)
def create_secret(
    body: SecretCreate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> SecretOut:
    """Store a value (admin), encrypted; runs of the org (or the project) may then name it."""
    return service.to_out(service.create_secret(session, caller, body, settings))


@router.get("/{secret_name}", response_model=SecretOut)
def get_secret(
    secret_name: SecretName, caller: Caller, session: SessionDep, project: ProjectQuery = None
) -> SecretOut:
    return service.to_out(service.get_secret(session, caller, secret_name, project))


@router.put("/{secret_name}", response_model=SecretOut)
def rotate_secret(
    secret_name: SecretName,
    body: SecretUpdate,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    project: ProjectQuery = None,
) -> SecretOut:
    """Replace the value (admin): runs launched from now on get the new one."""
    row = service.rotate_secret(session, caller, secret_name, project, body, settings)
    return service.to_out(row)


@router.delete("/{secret_name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_secret(
    secret_name: SecretName, caller: Caller, session: SessionDep, project: ProjectQuery = None
) -> Response:
    """Delete the value (admin); runs that name it fail to launch from now on."""
    service.delete_secret(session, caller, secret_name, project)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
