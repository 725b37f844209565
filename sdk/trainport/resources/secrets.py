"""`client.secrets`: your organisation's secret values for runs (`/v1/secrets`), write-only.

A run names a secret in its spec (`env: {WANDB_API_KEY: {secret: wandb}}`); an admin stores the
value here, org-wide or for one project. No call returns a value: only names and versions.
"""

from __future__ import annotations

from typing import Any

from trainport._http import APIRequest, segment
from trainport.errors import Conflict
from trainport.models import Secret
from trainport.resources._base import AsyncResource, SyncResource


def _scope(project: str | None) -> dict[str, str] | None:
    return {"project": project} if project is not None else None


def _list(project: str | None) -> APIRequest:
    return APIRequest("GET", "/v1/secrets", params=_scope(project))


def _get(name: str, project: str | None) -> APIRequest:
    return APIRequest("GET", f"/v1/secrets/{segment(name)}", params=_scope(project))


def _create(name: str, value: str, project: str | None) -> APIRequest:
    body: dict[str, Any] = {"name": name, "value": value}
    if project is not None:
        body["project"] = project
    # Not repeated blindly: after a lost answer the retry meets a 409 (`set` then rotates).
    return APIRequest("POST", "/v1/secrets", json=body, idempotent=False)


def _rotate(name: str, value: str, project: str | None) -> APIRequest:
    path = f"/v1/secrets/{segment(name)}"
    return APIRequest("PUT", path, params=_scope(project), json={"value": value})


def _delete(name: str, project: str | None) -> APIRequest:
    return APIRequest("DELETE", f"/v1/secrets/{segment(name)}", params=_scope(project))


def _secrets(body: Any) -> list[Secret]:
    return [Secret.model_validate(s) for s in body]


class Secrets(SyncResource):
    def list(self, *, project: str | None = None) -> list[Secret]:
        """Names, scopes and versions (every secret, or one project's); never a value."""
        return _secrets(self._http.json(_list(project)))

    def get(self, name: str, *, project: str | None = None) -> Secret:
        return Secret.model_validate(self._http.json(_get(name, project)))

    def create(self, name: str, value: str, *, project: str | None = None) -> Secret:
        """Store a new value (admin keys only); Conflict when the name is taken."""
        return Secret.model_validate(self._http.json(_create(name, value, project)))

    def rotate(self, name: str, value: str, *, project: str | None = None) -> Secret:
        """Replace the value (admin keys only); runs launched from now on get it."""
        return Secret.model_validate(self._http.json(_rotate(name, value, project)))

    def set(self, name: str, value: str, *, project: str | None = None) -> Secret:
        """Create the secret, or rotate it when it exists."""
        try:
            return self.create(name, value, project=project)
        except Conflict:
            return self.rotate(name, value, project=project)

    def delete(self, name: str, *, project: str | None = None) -> None:
        """Delete the value (admin keys only); runs naming it then fail to launch."""
        self._http.send(_delete(name, project))


class AsyncSecrets(AsyncResource):
    async def list(self, *, project: str | None = None) -> list[Secret]:
        """Names, scopes and versions (every secret, or one project's); never a value."""
        return _secrets(await self._http.json(_list(project)))

    async def get(self, name: str, *, project: str | None = None) -> Secret:
        return Secret.model_validate(await self._http.json(_get(name, project)))

    async def create(self, name: str, value: str, *, project: str | None = None) -> Secret:
        """Store a new value (admin keys only); Conflict when the name is taken."""
        return Secret.model_validate(await self._http.json(_create(name, value, project)))

    async def rotate(self, name: str, value: str, *, project: str | None = None) -> Secret:
        """Replace the value (admin keys only); runs launched from now on get it."""
        return Secret.model_validate(await self._http.json(_rotate(name, value, project)))

    async def set(self, name: str, value: str, *, project: str | None = None) -> Secret:
        """Create the secret, or rotate it when it exists."""
        try:
            return await self.create(name, value, project=project)
        except Conflict:
            return await self.rotate(name, value, project=project)

    async def delete(self, name: str, *, project: str | None = None) -> None:
        """Delete the value (admin keys only); runs naming it then fail to launch."""
        await self._http.send(_delete(name, project))
