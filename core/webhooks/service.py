"""Webhook endpoint rules: admins of an org manage its endpoints; nobody reads a secret twice.

Every function takes the caller and finds rows only inside the caller's org (a project-scoped
admin key: only its project's endpoints), so another org's endpoint answers 404 exactly as a
missing one. URLs are checked against the egress rules when written (a private address is a
422 at once) and again by the worker at each connection (DNS may change in between).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.egress import EgressPolicy, vet
from core.errors import NotFound
from core.ids import new_id
from core.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from core.pagination import DELIVERY_CURSOR
from core.secrets.encryption import cipher_for
from core.settings import Settings
from core.tenants.schemas import Principal, Role
from core.tenants.service import resolve_project
from core.webhooks import events, signing
from core.webhooks.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    EndpointCreate,
    EndpointOut,
    EndpointUpdate,
    EndpointWithSecret,
    EventType,
)

SECRET_SCOPE = "webhook"  # noqa: S105 - the `project` part of the ciphertext's binding (encryption.py)


def policy(settings: Settings) -> EgressPolicy:
    """The egress rules for webhook URLs: the operator's networks for both settings allowed."""
    networks = [*settings.egress_allowed_networks, *settings.webhook_allowed_networks]
    return EgressPolicy.allowing(networks, timeout_s=settings.webhook_timeout_seconds)


def seal(settings: Settings, org_id: str, endpoint_id: str, secret: str) -> str:
    return cipher_for(settings).encrypt(org_id, SECRET_SCOPE, endpoint_id, secret)


def unseal(settings: Settings, org_id: str, endpoint_id: str, ciphertext: str) -> str:
    return cipher_for(settings).decrypt(org_id, SECRET_SCOPE, endpoint_id, ciphertext)


def to_out(row: WebhookEndpoint) -> EndpointOut:
    return EndpointOut.model_validate(row)


def create_endpoint(
    session: Session, caller: Principal, body: EndpointCreate, settings: Settings
) -> EndpointWithSecret:
    caller.require(Role.ADMIN)
    project_id = _scope(session, caller, body.project)
    vet(str(body.url), policy(settings))
    now, secret = utcnow(), signing.new_secret()
    row = WebhookEndpoint(
        id=new_id("whe"),
        org_id=caller.org_id,
        project_id=project_id,
        url=str(body.url),
        description=body.description,
        event_types=[t.value for t in body.event_types],
        enabled=True,
        consecutive_failures=0,
        created_by=caller.key_id,
        created_at=now,
        updated_at=now,
    )
    row.secret_ciphertext = seal(settings, caller.org_id, row.id, secret)
    session.add(row)
    session.flush()
    return EndpointWithSecret(**to_out(row).model_dump(), secret=secret)


def list_endpoints(session: Session, caller: Principal) -> list[WebhookEndpoint]:
    caller.require(Role.ADMIN)
    query = select(WebhookEndpoint).where(WebhookEndpoint.org_id == caller.org_id)
    if caller.project_id is not None:
        query = query.where(WebhookEndpoint.project_id == caller.project_id)
    return list(session.scalars(query.order_by(WebhookEndpoint.id)))


def get_endpoint(session: Session, caller: Principal, endpoint_id: str) -> WebhookEndpoint:
    caller.require(Role.ADMIN)
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None or row.org_id != caller.org_id or not _in_scope(caller, row):
        raise NotFound(f"Webhook endpoint {endpoint_id} not found.")
    return row


def update_endpoint(
    session: Session, caller: Principal, endpoint_id: str, body: EndpointUpdate, settings: Settings
) -> WebhookEndpoint:
    row = get_endpoint(session, caller, endpoint_id)
    if body.url is not None:
        vet(str(body.url), policy(settings))
        row.url = str(body.url)
    if body.description is not None:
        row.description = body.description
    if body.event_types is not None:
        row.event_types = [t.value for t in body.event_types]
    if body.enabled is not None:
        row.enabled = body.enabled
        if body.enabled:  # resumed: the failure count starts over, pending deliveries go out
            row.disabled_reason, row.consecutive_failures, row.failing_since = None, 0, None
        else:
            row.disabled_reason = f"disabled by {caller.key_id}"
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_endpoint(session: Session, caller: Principal, endpoint_id: str) -> None:
    session.delete(get_endpoint(session, caller, endpoint_id))
    session.flush()


def rotate_secret(
    session: Session, caller: Principal, endpoint_id: str, settings: Settings
) -> EndpointWithSecret:
    """A new secret; the old one keeps signing beside it for `webhook_secret_grace_hours`."""
    row = get_endpoint(session, caller, endpoint_id)
    secret, now = signing.new_secret(), utcnow()
    row.previous_secret_ciphertext = row.secret_ciphertext
    row.previous_secret_until = now + timedelta(hours=settings.webhook_secret_grace_hours)
    row.secret_ciphertext = seal(settings, row.org_id, row.id, secret)
    row.updated_at = now
    session.flush()
    return EndpointWithSecret(**to_out(row).model_dump(), secret=secret)


def ping(session: Session, caller: Principal, endpoint_id: str) -> WebhookDelivery:
    """Queue a `webhook.ping` to this endpoint alone, whatever its filter."""
    row = get_endpoint(session, caller, endpoint_id)
    data = {"endpoint_id": row.id, "message": "ping from Trainport"}
    [delivery_id] = events.queue(session, row.org_id, [row.id], EventType.PING, data)
    return session.get_one(WebhookDelivery, delivery_id)


def list_deliveries(
    session: Session, caller: Principal, endpoint_id: str, limit: int, after: str | None
) -> DeliveryPage:
    """The endpoint's deliveries, newest first."""
    get_endpoint(session, caller, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if after is not None:
        query = query.where(WebhookDelivery.id < DELIVERY_CURSOR.decode(after))
    rows = list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    page, more = rows[:limit], len(rows) > limit
    return DeliveryPage(
        data=[DeliveryOut.model_validate(r) for r in page],
        has_more=more,
        next_cursor=DELIVERY_CURSOR.encode(page[-1].id) if more else None,
    )


def get_delivery(
    session: Session, caller: Principal, endpoint_id: str, delivery_id: str
) -> DeliveryDetail:
    row = _delivery(session, caller, endpoint_id, delivery_id)
    attempts = session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == row.id)
        .order_by(WebhookAttempt.attempt)
    )
    return DeliveryDetail(
        **DeliveryOut.model_validate(row).model_dump(),
        payload=row.payload,
        attempt_log=[AttemptOut.model_validate(a) for a in attempts],
    )


def redeliver(
    session: Session, caller: Principal, endpoint_id: str, delivery_id: str
) -> WebhookDelivery:
    """Send the delivery again (same `webhook-id`), now, whatever became of it."""
    row = _delivery(session, caller, endpoint_id, delivery_id)
    row.status = DeliveryStatus.PENDING.value
    row.next_attempt_at = row.updated_at = utcnow()
    row.claimed_until = None
    events.wake_worker(session)
    session.flush()
    return row


def delivery_counts(session: Session) -> dict[str, int]:
    """Deliveries by status, platform-wide (for an operator's metrics)."""
    rows = session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    )
    return {status: int(count) for status, count in rows}


def _delivery(
    session: Session, caller: Principal, endpoint_id: str, delivery_id: str
) -> WebhookDelivery:
    get_endpoint(session, caller, endpoint_id)
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.endpoint_id != endpoint_id:
        raise NotFound(f"Webhook delivery {delivery_id} not found.")
    return row


def _scope(session: Session, caller: Principal, project: str | None) -> str | None:
    if project is None and caller.project_id is None:
        return None
    return resolve_project(session, caller, project).id


def _in_scope(caller: Principal, row: WebhookEndpoint) -> bool:
    return caller.project_id is None or row.project_id == caller.project_id
