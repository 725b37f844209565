"""Webhook delivery end to end: a real worker tree, a real receiver, signatures checked by the SDK.

The receiver listens on 127.0.0.1, which the platform reaches only because the operator's
allow-list (`webhook_allowed_networks`) names it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

import trainport
from api.app import create_app
from api.app_state import app_engine
from core.db import session_scope
from core.models import WebhookDelivery, WebhookEndpoint
from core.settings import Settings
from tests.factories import Tenant, make_tenant, run_spec
from tests.support.platforms import StartPlatform
from tests.support.webhook_receiver import Receiver, start_receiver
from workers import webhooks

LOOPBACK = '["127.0.0.0/8"]'
FAST_RETRIES = {
    "webhook_allowed_networks": LOOPBACK,
    "webhook_retry_base_seconds": "0.05",
    "webhook_sweep_seconds": "0.2",
}


@pytest.fixture
def api(fresh_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=fresh_url,
        key_touch_interval_seconds=0,
        webhook_allowed_networks=["127.0.0.0/8"],
    )
    app = create_app(settings)
    yield TestClient(app, raise_server_exceptions=False)
    app_engine(app).dispose()


def _endpoint(api: TestClient, tenant: Tenant, url: str, **body: Any) -> dict[str, Any]:
    created = api.post("/v1/webhooks", json={"url": url, **body}, headers=tenant.headers)
    assert created.status_code == 201, created.text
    result: dict[str, Any] = created.json()
    return result


def _ping(api: TestClient, tenant: Tenant, endpoint_id: str) -> str:
    ping = api.post(f"/v1/webhooks/{endpoint_id}/ping", headers=tenant.headers)
    assert ping.status_code == 202, ping.text
    delivery_id: str = ping.json()["id"]
    return delivery_id


def _wait_delivery(
    factory: sessionmaker[Session], delivery_id: str, status: str, timeout: float = 30.0
) -> WebhookDelivery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # bounded poll of the delivery row
        with session_scope(factory) as session:
            row = session.get_one(WebhookDelivery, delivery_id)
            session.expunge(row)
        if row.status == status:
            return row
        time.sleep(0.05)
    raise AssertionError(f"delivery {delivery_id} is {row.status}, not {status}: {row.error}")


def _verified(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    return [trainport.webhooks.verify(r.body, r.headers, secret) for r in receiver.requests]


def test_a_failing_receiver_gets_retries_until_it_recovers(
    api: TestClient, factory: sessionmaker[Session], fresh_url: str, start_platform: StartPlatform
) -> None:
    receiver = start_receiver(lambda n: (500 if n < 2 else 204, {}))
    tenant = make_tenant(api)
    hook = _endpoint(api, tenant, receiver.url)
    start_platform(fresh_url, **FAST_RETRIES)
    delivery_id = _ping(api, tenant, hook["id"])
    _wait_delivery(factory, delivery_id, "succeeded")
    arrived = receiver.wait_for(3)
    assert {r.headers["webhook-id"] for r in arrived} == {delivery_id}
    events = _verified(receiver, hook["secret"])
    assert [e["type"] for e in events] == ["webhook.ping"] * 3
    detail = api.get(
        f"/v1/webhooks/{hook['id']}/deliveries/{delivery_id}", headers=tenant.headers
    ).json()
    assert [a["response_code"] for a in detail["attempt_log"]] == [500, 500, 204]
    assert [a["attempt"] for a in detail["attempt_log"]] == [1, 2, 3]
    assert detail["attempt_log"][0]["error"] == "HTTP 500"


def test_a_worker_killed_mid_delivery_leaves_it_to_be_sent_again(
    api: TestClient, factory: sessionmaker[Session], fresh_url: str, start_platform: StartPlatform
) -> None:
    receiver = start_receiver(lambda n: (200, {}))
    receiver.hold = threading.Event()  # the first request hangs until released
    tenant = make_tenant(api)
    hook = _endpoint(api, tenant, receiver.url)
    settings = {**FAST_RETRIES, "webhook_timeout_seconds": "2", "webhook_batch": "1"}
    first = start_platform(fresh_url, **settings)
    delivery_id = _ping(api, tenant, hook["id"])
    receiver.wait_for(1)  # the worker is inside the request now
    first.kill()
    receiver.hold.set()
    start_platform(fresh_url, **settings)
    row = _wait_delivery(factory, delivery_id, "succeeded")
    assert row.attempts == 2
    arrived = receiver.wait_for(2)
    assert [r.headers["webhook-id"] for r in arrived] == [delivery_id, delivery_id]
    assert len(_verified(receiver, hook["secret"])) == 2


def test_persistent_failure_disables_the_endpoint_and_says_so(
    api: TestClient, factory: sessionmaker[Session], fresh_url: str, start_platform: StartPlatform
) -> None:
    broken = start_receiver(lambda n: (503, {}))
    watcher = start_receiver(lambda n: (200, {}))
    tenant = make_tenant(api)
    failing = _endpoint(api, tenant, broken.url)
    told = _endpoint(api, tenant, watcher.url, event_types=["webhook.endpoint_disabled"])
    start_platform(
        fresh_url,
        **FAST_RETRIES,
        webhook_disable_after_failures="3",
        webhook_disable_after_hours="0",
    )
    _ping(api, tenant, failing["id"])
    [notice] = watcher.wait_for(1)
    event = trainport.webhooks.verify(notice.body, notice.headers, told["secret"])
    assert event["type"] == "webhook.endpoint_disabled"
    assert event["data"]["endpoint_id"] == failing["id"]
    assert len(broken.requests) == 3
    shown = api.get(f"/v1/webhooks/{failing['id']}", headers=tenant.headers).json()
    assert shown["enabled"] is False
    assert "3 consecutive failed deliveries" in shown["disabled_reason"]
    with session_scope(factory) as session:
        assert session.get_one(WebhookEndpoint, failing["id"]).consecutive_failures == 3


def test_a_finished_run_is_delivered_with_its_reason(
    api: TestClient, factory: sessionmaker[Session], fresh_url: str, start_platform: StartPlatform
) -> None:
    receiver = start_receiver(lambda n: (200, {}))
    tenant = make_tenant(api)
    hook = _endpoint(api, tenant, receiver.url, event_types=["run.created", "run.finished"])
    start_platform(fresh_url, **FAST_RETRIES)
    run = api.post("/v1/runs", json=run_spec(command=["true"]), headers=tenant.headers)
    assert run.status_code == 201, run.text
    receiver.wait_for(2, timeout=60)
    events = _verified(receiver, hook["secret"])
    assert [e["type"] for e in events] == ["run.created", "run.finished"]
    finished = events[1]["data"]
    assert finished["run"]["id"] == run.json()["id"]
    assert finished["change"]["to"] == "succeeded"
    assert json.loads(receiver.requests[1].body)["data"]["change"]["reason"] == "completed"


def test_attempts_are_counted_by_result_for_prometheus(
    api: TestClient, factory: sessionmaker[Session], fresh_url: str
) -> None:
    """Issue 19 asks the workers' /metrics for webhook deliveries by result: one round of the
    delivery task (in this process) against a receiver that fails once, then a retry."""
    receiver = start_receiver(lambda n: (503 if n == 0 else 204, {}))
    tenant = make_tenant(api)
    hook = _endpoint(api, tenant, receiver.url)
    settings = Settings(database_url=fresh_url, webhook_allowed_networks=["127.0.0.0/8"])
    settings = settings.model_copy(update={"webhook_retry_base_seconds": 0.01})

    def sample(result: str) -> float:
        value = REGISTRY.get_sample_value("trainport_webhook_attempts_total", {"result": result})
        return value or 0.0

    before = {result: sample(result) for result in ("succeeded", "http_error")}
    delivery_id = _ping(api, tenant, hook["id"])
    assert webhooks.deliver_due(factory, settings) >= 1
    deadline = time.monotonic() + 10
    while _status(factory, delivery_id) != "succeeded":  # the retry is due within ~10 ms
        assert time.monotonic() < deadline, "the retry never succeeded"
        webhooks.deliver_due(factory, settings)
        time.sleep(0.02)

    assert sample("http_error") - before["http_error"] == 1
    assert sample("succeeded") - before["succeeded"] == 1
    assert (REGISTRY.get_sample_value("trainport_webhook_attempt_duration_seconds_count") or 0) >= 2


def _status(factory: sessionmaker[Session], delivery_id: str) -> str:
    with session_scope(factory) as session:
        return session.get_one(WebhookDelivery, delivery_id).status
