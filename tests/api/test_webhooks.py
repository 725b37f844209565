"""`/v1/webhooks`: admin-only endpoints, secrets shown once, SSRF refusals, events queued."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app_state import app_sessionmaker, app_settings
from core.db import session_scope
from core.models import OutboxMessage, WebhookDelivery, WebhookEndpoint, utcnow
from core.runs.states import RunStatus
from core.webhooks import delivery
from tests.api.expect import advance, assert_problem
from tests.factories import PUBLIC_HOOK, Tenant, app_of, create_run, make_key


def _create(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/webhooks", json={"url": PUBLIC_HOOK, **body}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def _deliveries(client: TestClient, endpoint_id: str) -> list[WebhookDelivery]:
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        rows = list(session.scalars(query.order_by(WebhookDelivery.created_at)))
        session.expunge_all()
        return rows


def test_create_answers_the_secret_once_and_stores_only_ciphertext(
    client: TestClient, tenant: Tenant
) -> None:
    hook = _create(client, tenant, description="ci", event_types=["run.finished"])
    assert hook["secret"].startswith("whsec_")
    again = client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.headers)
    assert again.status_code == 200
    assert "secret" not in again.json()
    assert hook["secret"] not in client.get("/v1/webhooks", headers=tenant.headers).text
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        row = session.get_one(WebhookEndpoint, hook["id"])
        assert hook["secret"] not in row.secret_ciphertext


def test_rotation_answers_a_new_secret(client: TestClient, tenant: Tenant) -> None:
    hook = _create(client, tenant)
    rotated = client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=tenant.headers)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in {hook["secret"], None}


def test_update_changes_filters_and_disables(client: TestClient, tenant: Tenant) -> None:
    hook = _create(client, tenant)
    patch = {"event_types": ["run.created"], "enabled": False, "description": "paused"}
    updated = client.patch(f"/v1/webhooks/{hook['id']}", json=patch, headers=tenant.headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["event_types"] == ["run.created"]
    assert updated.json()["enabled"] is False
    deleted = client.delete(f"/v1/webhooks/{hook['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert_problem(client.get(f"/v1/webhooks/{hook['id']}", headers=tenant.headers), 404)


def test_private_addresses_are_refused_at_create_and_update(
    client: TestClient, tenant: Tenant
) -> None:
    for url in (
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://localhost/hook",
    ):
        refused = client.post("/v1/webhooks", json={"url": url}, headers=tenant.headers)
        assert_problem(refused, 422, "destination_not_allowed")
    hook = _create(client, tenant)
    moved = client.patch(
        f"/v1/webhooks/{hook['id']}", json={"url": "http://192.168.1.1/"}, headers=tenant.headers
    )
    assert_problem(moved, 422, "destination_not_allowed")


def test_members_and_viewers_get_403(client: TestClient, tenant: Tenant) -> None:
    hook = _create(client, tenant)
    for role in ("member", "viewer"):
        key = make_key(client, tenant, role)
        assert_problem(client.get("/v1/webhooks", headers=key.headers), 403, "forbidden")
        listed = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=key.headers)
        assert_problem(listed, 403, "forbidden")
        created = client.post("/v1/webhooks", json={"url": PUBLIC_HOOK}, headers=key.headers)
        assert_problem(created, 403, "forbidden")


def test_run_changes_queue_filtered_deliveries_with_the_outbox(
    client: TestClient, tenant: Tenant
) -> None:
    everything = _create(client, tenant)
    finished_only = _create(client, tenant, event_types=["run.finished"])
    run = create_run(client, tenant)
    advance(client, run["id"], RunStatus.QUEUED)
    client.post(f"/v1/runs/{run['id']}/cancel", headers=tenant.headers)
    types = [d.event_type for d in _deliveries(client, everything["id"])]
    assert types[0] == "run.created"
    assert "run.status_changed" in types
    assert "run.finished" in types
    finished = _deliveries(client, finished_only["id"])
    assert [d.event_type for d in finished] == ["run.finished"]
    assert finished[0].payload["data"]["run"]["id"] == run["id"]
    assert finished[0].payload["data"]["change"]["to"] == "cancelled"
    assert finished[0].payload["data"]["change"]["reason"] == "user_cancelled"
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        woken = session.scalars(
            select(OutboxMessage).where(OutboxMessage.task == "trainport.deliver_webhooks")
        ).all()
        assert woken


def test_ping_and_redeliver_show_in_the_delivery_log(client: TestClient, tenant: Tenant) -> None:
    hook = _create(client, tenant, event_types=["run.finished"])
    ping = client.post(f"/v1/webhooks/{hook['id']}/ping", headers=tenant.headers)
    assert ping.status_code == 202, ping.text
    log = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=tenant.headers).json()
    assert [d["id"] for d in log["data"]] == [ping.json()["id"]]
    assert log["data"][0]["event_type"] == "webhook.ping"
    path = f"/v1/webhooks/{hook['id']}/deliveries/{ping.json()['id']}"
    detail = client.get(path, headers=tenant.headers).json()
    assert detail["payload"]["type"] == "webhook.ping"
    again = client.post(f"{path}/redeliver", headers=tenant.headers)
    assert again.status_code == 202
    assert again.json()["id"] == ping.json()["id"]


def test_another_orgs_endpoint_is_missing(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    hook = _create(client, tenant)
    assert_problem(client.get(f"/v1/webhooks/{hook['id']}", headers=other_tenant.headers), 404)
    assert client.get("/v1/webhooks", headers=other_tenant.headers).json() == []
    run = create_run(client, other_tenant)
    assert run["id"] not in str([d.payload for d in _deliveries(client, hook["id"])])


def test_pruning_forgets_finished_deliveries_and_keeps_pending_ones(
    client: TestClient, tenant: Tenant
) -> None:
    hook = _create(client, tenant)
    done = client.post(f"/v1/webhooks/{hook['id']}/ping", headers=tenant.headers).json()
    pending = client.post(f"/v1/webhooks/{hook['id']}/ping", headers=tenant.headers).json()
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        session.get_one(WebhookDelivery, done["id"]).status = "succeeded"
    with session_scope(app_sessionmaker(app)) as session:
        delivery.prune(session, utcnow() + timedelta(seconds=1))
    assert [d.id for d in _deliveries(client, hook["id"])] == [pending["id"]]


def test_after_a_rotation_both_secrets_sign_until_the_grace_period_ends(
    client: TestClient, tenant: Tenant
) -> None:
    hook = _create(client, tenant)
    rotated = client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=tenant.headers)
    ping = client.post(f"/v1/webhooks/{hook['id']}/ping", headers=tenant.headers).json()
    app = app_of(client)
    settings = app_settings(app).model_copy(update={"webhook_batch": 5000})
    with session_scope(app_sessionmaker(app)) as session:
        [due] = [d for d in delivery.claim(session, settings) if d.id == ping["id"]]
    assert due.secrets == (rotated.json()["secret"], hook["secret"])
    with session_scope(app_sessionmaker(app)) as session:
        endpoint = session.get_one(WebhookEndpoint, hook["id"])
        endpoint.previous_secret_until = utcnow() - timedelta(seconds=1)
        session.get_one(WebhookDelivery, ping["id"]).claimed_until = None
    with session_scope(app_sessionmaker(app)) as session:
        [due] = [d for d in delivery.claim(session, settings) if d.id == ping["id"]]
    assert due.secrets == (rotated.json()["secret"],)
