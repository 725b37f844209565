"""`/v1/webhooks`: an org's webhook endpoints, their delivery log, pings and redeliveries (admin).

Create and rotate-secret answer the signing secret once; no other route ever shows it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.deps import Caller, SessionDep, SettingsDep
from api.routing import UnitOfWorkRoute
from core.pagination import DELIVERY_CURSOR, MAX_PAGE_SIZE
from core.webhooks import service
from core.webhooks.schemas import (
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    EndpointCreate,
    EndpointOut,
    EndpointUpdate,
    EndpointWithSecret,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=UnitOfWorkRoute)
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")]


@router.post("", response_model=EndpointWithSecret, status_code=status.HTTP_201_CREATED)
def create_webhook(
    body: EndpointCreate, caller: Caller, session: SessionDep, settings: SettingsDep
) -> EndpointWithSecret:
    """Register an endpoint; the answer holds its signing secret, shown this once."""
    return service.create_endpoint(session, caller, body, settings)


@router.get("", response_model=list[EndpointOut])
def list_webhooks(caller: Caller, session: SessionDep) -> list[EndpointOut]:
    return [service.to_out(row) for row in service.list_endpoints(session, caller)]


@router.get("/{webhook_id}", response_model=EndpointOut)
def get_webhook(webhook_id: str, caller: Caller, session: SessionDep) -> EndpointOut:
    return service.to_out(service.get_endpoint(session, caller, webhook_id))


@router.patch("/{webhook_id}", response_model=EndpointOut)
def update_webhook(
    webhook_id: str,
    body: EndpointUpdate,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
) -> EndpointOut:
    """Change the URL, filters, description, or enable/disable it."""
    return service.to_out(service.update_endpoint(session, caller, webhook_id, body, settings))


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: str, caller: Caller, session: SessionDep) -> Response:
    service.delete_endpoint(session, caller, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{webhook_id}/rotate-secret", response_model=EndpointWithSecret)
def rotate_webhook_secret(
    webhook_id: str, caller: Caller, session: SessionDep, settings: SettingsDep
) -> EndpointWithSecret:
    """A new secret; the previous one also signs for `webhook_secret_grace_hours`."""
    return service.rotate_secret(session, caller, webhook_id, settings)


@router.post("/{webhook_id}/ping", response_model=DeliveryOut, status_code=202)
def ping_webhook(webhook_id: str, caller: Caller, session: SessionDep) -> DeliveryOut:
    """Send a `webhook.ping` event to this endpoint; follow it in the delivery log."""
    return DeliveryOut.model_validate(service.ping(session, caller, webhook_id))


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage)
def list_webhook_deliveries(
    webhook_id: str,
    caller: Caller,
    session: SessionDep,
    limit: Limit = 50,
    after: Annotated[
        str | None,
        Query(pattern=DELIVERY_CURSOR.pattern, description="`next_cursor` of the last page"),
    ] = None,
) -> DeliveryPage:
    """The delivery log, newest first: status, attempts, last response code and latency."""
    return service.list_deliveries(session, caller, webhook_id, limit, after)


@router.get("/{webhook_id}/deliveries/{delivery_id}", response_model=DeliveryDetail)
def get_webhook_delivery(
    webhook_id: str, delivery_id: str, caller: Caller, session: SessionDep
) -> DeliveryDetail:
    """One delivery with its body and every attempt."""
    return service.get_delivery(session, caller, webhook_id, delivery_id)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut, status_code=202
)
def redeliver_webhook(
    webhook_id: str, delivery_id: str, caller: Caller, session: SessionDep
) -> DeliveryOut:
    """Send the delivery again now, with the same `webhook-id`."""
    row = service.redeliver(session, caller, webhook_id, delivery_id)
    return DeliveryOut.model_validate(row)
