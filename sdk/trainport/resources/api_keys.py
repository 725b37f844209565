"""`client.api_keys`: mint, list and revoke your organisation's API keys (admin keys only)."""

from __future__ import annotations

from typing import Any

from trainport._http import APIRequest, segment
from trainport.models import ApiKey, ApiKeyCreated
from trainport.resources._base import AsyncResource, SyncResource

_LIST = APIRequest("GET", "/v1/api-keys")


def _create(name: str, role: str, project: str | None, expires_in_days: int | None) -> APIRequest:
    body: dict[str, Any] = {"name": name, "role": role}
    if project is not None:
        body["project"] = project
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    # Not safe to repeat blindly: a retry after a lost answer would mint a second key.
    return APIRequest("POST", "/v1/api-keys", json=body, idempotent=False)


def _revoke(key_id: str) -> APIRequest:
    return APIRequest("DELETE", f"/v1/api-keys/{segment(key_id)}")


def _keys(body: Any) -> list[ApiKey]:
    return [ApiKey.model_validate(k) for k in body]


class ApiKeys(SyncResource):
    def create(
        self,
        name: str,
        *,
        role: str = "member",
        project: str | None = None,
        expires_in_days: int | None = None,
    ) -> ApiKeyCreated:
        """Mint a key; `.key` holds the secret, returned this once only."""
        call = _create(name, role, project, expires_in_days)
        return ApiKeyCreated.model_validate(self._http.json(call))

    def list(self) -> list[ApiKey]:
        """Every key of the organisation: prefix, role and last use, never the secret."""
        return _keys(self._http.json(_LIST))

    def revoke(self, key_id: str) -> None:
        """Revoke a key; it stops working at once."""
        self._http.send(_revoke(key_id))


class AsyncApiKeys(AsyncResource):
    async def create(
        self,
        name: str,
        *,
        role: str = "member",
        project: str | None = None,
        expires_in_days: int | None = None,
    ) -> ApiKeyCreated:
        """Mint a key; `.key` holds the secret, returned this once only."""
        call = _create(name, role, project, expires_in_days)
        return ApiKeyCreated.model_validate(await self._http.json(call))

    async def list(self) -> list[ApiKey]:
        """Every key of the organisation: prefix, role and last use, never the secret."""
        return _keys(await self._http.json(_LIST))

    async def revoke(self, key_id: str) -> None:
        """Revoke a key; it stops working at once."""
        await self._http.send(_revoke(key_id))
