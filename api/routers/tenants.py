"""`/v1/me`, `/v1/projects` and `/v1/api-keys`: who is calling, and what their org holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from api.deps import Caller, SessionDep
from api.routing import UnitOfWorkRoute
from core.errors import NotFound
from core.tenants import service
from core.tenants.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    Me,
    OrganizationOut,
    ProjectCreate,
    ProjectOut,
)

router = APIRouter(prefix="/v1", route_class=UnitOfWorkRoute)
ObjectId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/me", response_model=Me, tags=["tenancy"])
def get_me(caller: Caller, session: SessionDep) -> Me:
    """The organisation and API key behind this request."""
    org, key = service.current_key(session, caller)
    return Me(organization=OrganizationOut.model_validate(org), key=ApiKeyOut.model_validate(key))


@router.get("/projects", response_model=list[ProjectOut], tags=["projects"])
def list_projects(caller: Caller, session: SessionDep) -> list[ProjectOut]:
    return [ProjectOut.model_validate(p) for p in service.list_projects(session, caller)]


@router.post(
    "/projects", response_model=ProjectOut, status_code=status.HTTP_201_CREATED, tags=["projects"]
)
def create_project(body: ProjectCreate, caller: Caller, session: SessionDep) -> ProjectOut:
    """Create a project (admin)."""
    return ProjectOut.model_validate(service.create_project(session, caller, body))


@router.get("/projects/{project_id}", response_model=ProjectOut, tags=["projects"])
def get_project(project_id: ObjectId, caller: Caller, session: SessionDep) -> ProjectOut:
    project = service.resolve_project(session, caller, project_id)
    if project.id != project_id:  # by id only here; names are for run submission
        raise NotFound(f"Project {project_id} was not found.")
    return ProjectOut.model_validate(project)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    tags=["api-keys"],
)
def create_api_key(body: ApiKeyCreate, caller: Caller, session: SessionDep) -> ApiKeyCreated:
    """Mint a key (admin). The full key is in this response only; store it now."""
    key, secret = service.create_key(session, caller, body)
    return ApiKeyCreated.model_validate(
        {**ApiKeyOut.model_validate(key).model_dump(), "key": secret}
    )


@router.get("/api-keys", response_model=list[ApiKeyOut], tags=["api-keys"])
def list_api_keys(caller: Caller, session: SessionDep) -> list[ApiKeyOut]:
    """Every key of the org (admin): prefix, role, last use; never the secret."""
    return [ApiKeyOut.model_validate(k) for k in service.list_keys(session, caller)]


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["api-keys"])
def revoke_api_key(key_id: ObjectId, caller: Caller, session: SessionDep) -> Response:
    """Revoke a key (admin); it stops working at once."""
    service.revoke_key(session, caller, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
