"""`client.projects`: the projects of your organisation (`/v1/projects`)."""

from __future__ import annotations

from typing import Any

from trainport._http import APIRequest, segment
from trainport.models import Project
from trainport.resources._base import AsyncResource, SyncResource

_LIST = APIRequest("GET", "/v1/projects")


def _create(name: str, description: str) -> APIRequest:
    # Not safe to repeat blindly: a retry after a lost answer would meet a 409 "already exists".
    body = {"name": name, "description": description}
    return APIRequest("POST", "/v1/projects", json=body, idempotent=False)


def _get(project_id: str) -> APIRequest:
    return APIRequest("GET", f"/v1/projects/{segment(project_id)}")


def _projects(body: Any) -> list[Project]:
    return [Project.model_validate(p) for p in body]


class Projects(SyncResource):
    def list(self) -> list[Project]:
        """Every project of the organisation."""
        return _projects(self._http.json(_LIST))

    def create(self, name: str, *, description: str = "") -> Project:
        """Create a project (admin keys only)."""
        return Project.model_validate(self._http.json(_create(name, description)))

    def get(self, project_id: str) -> Project:
        return Project.model_validate(self._http.json(_get(project_id)))


class AsyncProjects(AsyncResource):
    async def list(self) -> list[Project]:
        """Every project of the organisation."""
        return _projects(await self._http.json(_LIST))

    async def create(self, name: str, *, description: str = "") -> Project:
        """Create a project (admin keys only)."""
        return Project.model_validate(await self._http.json(_create(name, description)))

    async def get(self, project_id: str) -> Project:
        return Project.model_validate(await self._http.json(_get(project_id)))
