"""The worker's side of a delivery, in the database: claim due rows, then record what happened.

`claim` leases due deliveries (`FOR UPDATE SKIP LOCKED`, so workers share them) and counts the
attempt before any request goes out; `record` writes the outcomes in one transaction: the
attempt log, the delivery's next due time (exponential backoff with full jitter) or its end,
and each endpoint's failure streak, disabling an endpoint that failed
`webhook_disable_after_failures` times in a row over at least `webhook_disable_after_hours`
(and emitting `webhook.endpoint_disabled` to the org's other endpoints). A worker killed
between the two leaves its rows leased; when the lease runs out the sweep claims them again,
with the same `webhook-id`: delivery is at least once.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session

from core.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from core.settings import Settings
from core.webhooks import events
from core.webhooks.schemas import DeliveryStatus, EventType
from core.webhooks.service import unseal

EXCERPT = 500  # characters of a receiver's answer kept in the log
log = logging.getLogger("trainport.webhooks")


@dataclass(frozen=True)
class Due:
    """One claimed delivery, ready to send: the body is signed as these exact bytes."""

    id: str
    endpoint_id: str
    url: str
    body: bytes
    secrets: tuple[str, ...]
    attempt: int


@dataclass(frozen=True)
class Outcome:
    delivery_id: str
    endpoint_id: str
    attempt: int
    started_at: datetime
    latency_ms: int
    response_code: int | None = None
    response_excerpt: str | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.response_code is not None and 200 <= self.response_code < 300


def lease_seconds(settings: Settings) -> float:
    """Long enough for a whole claimed batch to be sent in waves of `webhook_concurrency`."""
    waves = -(-settings.webhook_batch // settings.webhook_concurrency)
    return settings.webhook_timeout_seconds * waves + 5.0


def claim(session: Session, settings: Settings) -> list[Due]:
    now = utcnow()
    rows = session.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
            WebhookEndpoint.enabled.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(settings.webhook_batch)
        .with_for_update(of=WebhookDelivery, skip_locked=True)
    ).all()
    until = now + timedelta(seconds=lease_seconds(settings))
    keys: dict[str, tuple[str, ...]] = {}
    claimed = []
    for delivery, endpoint in rows:
        delivery.claimed_until = until
        delivery.attempts += 1
        if endpoint.id not in keys:
            keys[endpoint.id] = _signing_secrets(settings, endpoint, now)
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        claimed.append(
            Due(delivery.id, endpoint.id, endpoint.url, body, keys[endpoint.id], delivery.attempts)
        )
    session.flush()
    return claimed


def _signing_secrets(
    settings: Settings, endpoint: WebhookEndpoint, now: datetime
) -> tuple[str, ...]:
    current = unseal(settings, endpoint.org_id, endpoint.id, endpoint.secret_ciphertext)
    previous = endpoint.previous_secret_ciphertext
    if previous is None or endpoint.previous_secret_until is None:
        return (current,)
    if endpoint.previous_secret_until <= now:
        return (current,)
    return (current, unseal(settings, endpoint.org_id, endpoint.id, previous))


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: full jitter over an exponentially growing cap."""
    cap = min(settings.webhook_retry_max_seconds, settings.webhook_retry_base_seconds * 2**attempt)
    return random.uniform(0, cap)  # noqa: S311 - jitter, not a secret


def record(session: Session, settings: Settings, outcomes: Sequence[Outcome]) -> None:
    """Write a round's outcomes: attempt log, deliveries, endpoints, in bulk."""
    if not outcomes:
        return
    now = utcnow()
    session.execute(insert(WebhookAttempt), [_attempt_row(o) for o in outcomes])
    ids = [o.delivery_id for o in outcomes]
    query = select(WebhookDelivery.id, WebhookDelivery.created_at).where(
        WebhookDelivery.id.in_(ids)
    )
    created = {delivery_id: at for delivery_id, at in session.execute(query)}
    give_up = now - timedelta(hours=settings.webhook_retry_for_hours)
    session.execute(
        update(WebhookDelivery),
        [_delivery_row(settings, o, created[o.delivery_id] <= give_up, now) for o in outcomes],
    )
    _update_endpoints(session, settings, outcomes, now)
    session.flush()


def _attempt_row(o: Outcome) -> dict[str, object]:
    return {
        "delivery_id": o.delivery_id,
        "attempt": o.attempt,
        "succeeded": o.succeeded,
        "response_code": o.response_code,
        "latency_ms": o.latency_ms,
        "response_excerpt": o.response_excerpt,
        "error": o.error,
        "started_at": o.started_at,
    }


def _delivery_row(
    settings: Settings, o: Outcome, too_old: bool, now: datetime
) -> dict[str, object]:
    if o.succeeded:
        status, due = DeliveryStatus.SUCCEEDED, None
    elif too_old:
        status, due = DeliveryStatus.FAILED, None
    else:
        status, due = DeliveryStatus.PENDING, now + timedelta(seconds=backoff(settings, o.attempt))
    return {
        "id": o.delivery_id,
        "status": status.value,
        "next_attempt_at": due,
        "claimed_until": None,
        "response_code": o.response_code,
        "latency_ms": o.latency_ms,
        "response_excerpt": o.response_excerpt,
        "error": o.error,
        "updated_at": now,
    }


def _update_endpoints(
    session: Session, settings: Settings, outcomes: Sequence[Outcome], now: datetime
) -> None:
    by_endpoint: dict[str, list[Outcome]] = {}
    for outcome in sorted(outcomes, key=lambda o: o.started_at):
        by_endpoint.setdefault(outcome.endpoint_id, []).append(outcome)
    endpoints = session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.id.in_(list(by_endpoint)))
        .order_by(WebhookEndpoint.id)
        .with_for_update()
    )
    for endpoint in endpoints:
        for outcome in by_endpoint[endpoint.id]:
            _note(endpoint, outcome)
        if _persistently_failing(settings, endpoint, now):
            _disable(session, endpoint, now)


def _note(endpoint: WebhookEndpoint, outcome: Outcome) -> None:
    if outcome.succeeded:
        endpoint.consecutive_failures, endpoint.failing_since = 0, None
    else:
        endpoint.consecutive_failures += 1
        endpoint.failing_since = endpoint.failing_since or outcome.started_at


def _persistently_failing(settings: Settings, endpoint: WebhookEndpoint, now: datetime) -> bool:
    if not endpoint.enabled or endpoint.failing_since is None:
        return False
    long_enough = now - endpoint.failing_since >= timedelta(
        hours=settings.webhook_disable_after_hours
    )
    return endpoint.consecutive_failures >= settings.webhook_disable_after_failures and long_enough


def _disable(session: Session, endpoint: WebhookEndpoint, now: datetime) -> None:
    endpoint.enabled = False
    endpoint.updated_at = now
    endpoint.disabled_reason = (
        f"{endpoint.consecutive_failures} consecutive failed deliveries since "
        f"{endpoint.failing_since.isoformat() if endpoint.failing_since else now.isoformat()}"
    )
    session.flush()  # so `emit` below no longer counts it among the enabled endpoints
    data = {
        "endpoint_id": endpoint.id,
        "url": endpoint.url,
        "reason": endpoint.disabled_reason,
        "consecutive_failures": endpoint.consecutive_failures,
    }
    events.emit(session, endpoint.org_id, endpoint.project_id, EventType.ENDPOINT_DISABLED, data)
    log.warning("webhook endpoint %s disabled: %s", endpoint.id, endpoint.disabled_reason)


def prune(session: Session, finished_before: datetime) -> int:
    """Forget finished deliveries (and their attempts, by cascade) last touched before then."""
    result = session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status != DeliveryStatus.PENDING.value,
            WebhookDelivery.updated_at < finished_before,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
