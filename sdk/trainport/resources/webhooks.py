"""`client.webhooks`: your organisation's webhook endpoints (`/v1/webhooks`, admin keys only).

`create` and `rotate_secret` answer the signing secret (`endpoint.secret`) once; store it and
check deliveries with `trainport.webhooks.verify`. `deliveries` is an endpoint's delivery log.
"""

from __future__ import annotations

from typing import Any

from trainport._http import APIRequest, segment
from trainport.models import WebhookDelivery, WebhookEndpoint
from trainport.resources._base import AsyncResource, SyncResource

BASE = "/v1/webhooks"
# Aliases: `list` is a method name in the classes below.
Deliveries = list[WebhookDelivery]
EventTypes = list[str] | None


def _create(
    url: str, event_types: list[str] | None, description: str, project: str | None
) -> APIRequest:
    body: dict[str, Any] = {"url": url, "description": description}
    if event_types is not None:
        body["event_types"] = event_types
    if project is not None:
        body["project"] = project
    # Not repeated blindly: a lost answer would otherwise make a second endpoint.
    return APIRequest("POST", BASE, json=body, idempotent=False)


def _update(endpoint_id: str, **changes: Any) -> APIRequest:
    body = {k: v for k, v in changes.items() if v is not None}
    return APIRequest("PATCH", f"{BASE}/{segment(endpoint_id)}", json=body)


def _path(endpoint_id: str, *rest: str) -> str:
    return "/".join([BASE, segment(endpoint_id), *map(segment, rest)])


def _deliveries(endpoint_id: str, limit: int, after: str | None) -> APIRequest:
    params: dict[str, Any] = {"limit": limit} | ({"after": after} if after else {})
    return APIRequest("GET", _path(endpoint_id, "deliveries"), params=params)


def _post(path: str) -> APIRequest:
    return APIRequest("POST", path, idempotent=False)


def _endpoints(body: Any) -> list[WebhookEndpoint]:
    return [WebhookEndpoint.model_validate(e) for e in body]


def _delivery_page(body: Any) -> Deliveries:
    return [WebhookDelivery.model_validate(d) for d in body["data"]]


class Webhooks(SyncResource):
    def create(
        self,
        url: str,
        *,
        event_types: list[str] | None = None,
        description: str = "",
        project: str | None = None,
    ) -> WebhookEndpoint:
        """Register an endpoint (every event when `event_types` is None); `.secret` once."""
        body = self._http.json(_create(url, event_types, description, project))
        return WebhookEndpoint.model_validate(body)

    def list(self) -> list[WebhookEndpoint]:
        return _endpoints(self._http.json(APIRequest("GET", BASE)))

    def get(self, endpoint_id: str) -> WebhookEndpoint:
        return WebhookEndpoint.model_validate(
            self._http.json(APIRequest("GET", _path(endpoint_id)))
        )

    def update(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        event_types: EventTypes = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpoint:
        call = _update(
            endpoint_id, url=url, event_types=event_types, description=description, enabled=enabled
        )
        return WebhookEndpoint.model_validate(self._http.json(call))

    def delete(self, endpoint_id: str) -> None:
        self._http.send(APIRequest("DELETE", _path(endpoint_id)))

    def rotate_secret(self, endpoint_id: str) -> WebhookEndpoint:
        """A new secret (`.secret`); the old one keeps signing for a grace period."""
        call = _post(_path(endpoint_id, "rotate-secret"))
        return WebhookEndpoint.model_validate(self._http.json(call))

    def ping(self, endpoint_id: str) -> WebhookDelivery:
        call = _post(_path(endpoint_id, "ping"))
        return WebhookDelivery.model_validate(self._http.json(call))

    def deliveries(
        self, endpoint_id: str, *, limit: int = 50, after: str | None = None
    ) -> Deliveries:
        """The newest deliveries first (one page)."""
        return _delivery_page(self._http.json(_deliveries(endpoint_id, limit, after)))

    def delivery(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        """One delivery with its body and attempt log."""
        call = APIRequest("GET", _path(endpoint_id, "deliveries", delivery_id))
        return WebhookDelivery.model_validate(self._http.json(call))

    def redeliver(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        call = _post(_path(endpoint_id, "deliveries", delivery_id, "redeliver"))
        return WebhookDelivery.model_validate(self._http.json(call))


class AsyncWebhooks(AsyncResource):
    async def create(
        self,
        url: str,
        *,
        event_types: list[str] | None = None,
        description: str = "",
        project: str | None = None,
    ) -> WebhookEndpoint:
        """Register an endpoint (every event when `event_types` is None); `.secret` once."""
        body = await self._http.json(_create(url, event_types, description, project))
        return WebhookEndpoint.model_validate(body)

    async def list(self) -> list[WebhookEndpoint]:
        return _endpoints(await self._http.json(APIRequest("GET", BASE)))

    async def get(self, endpoint_id: str) -> WebhookEndpoint:
        body = await self._http.json(APIRequest("GET", _path(endpoint_id)))
        return WebhookEndpoint.model_validate(body)

    async def update(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        event_types: EventTypes = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpoint:
        call = _update(
            endpoint_id, url=url, event_types=event_types, description=description, enabled=enabled
        )
        return WebhookEndpoint.model_validate(await self._http.json(call))

    async def delete(self, endpoint_id: str) -> None:
        await self._http.send(APIRequest("DELETE", _path(endpoint_id)))

    async def rotate_secret(self, endpoint_id: str) -> WebhookEndpoint:
        call = _post(_path(endpoint_id, "rotate-secret"))
        return WebhookEndpoint.model_validate(await self._http.json(call))

    async def ping(self, endpoint_id: str) -> WebhookDelivery:
        call = _post(_path(endpoint_id, "ping"))
        return WebhookDelivery.model_validate(await self._http.json(call))

    async def deliveries(
        self, endpoint_id: str, *, limit: int = 50, after: str | None = None
    ) -> Deliveries:
        return _delivery_page(await self._http.json(_deliveries(endpoint_id, limit, after)))

    async def delivery(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        call = APIRequest("GET", _path(endpoint_id, "deliveries", delivery_id))
        return WebhookDelivery.model_validate(await self._http.json(call))

    async def redeliver(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        call = _post(_path(endpoint_id, "deliveries", delivery_id, "redeliver"))
        return WebhookDelivery.model_validate(await self._http.json(call))
