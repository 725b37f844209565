"""Authentication: every bad key fails the same way, and only a key's digest is ever stored."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app_state import app_sessionmaker
from core.db import session_scope
from core.models import utcnow
from core.tenants.service import authenticate
from tests.api.expect import assert_problem
from tests.factories import Tenant, app_of, make_key
from tests.support.servers import LiveServer


def _unauthenticated_shape(client: TestClient, headers: dict[str, str]) -> dict[str, object]:
    response = client.get("/v1/runs", headers=headers)
    body = assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    return {k: v for k, v in body.items() if k not in {"request_id", "instance"}}


def _sql(client: TestClient, statement: str, **params: object) -> list[tuple[object, ...]]:
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        result = session.execute(text(statement), params)
        return [tuple(row) for row in result] if statement.startswith("SELECT") else []


def _revoked(client: TestClient, tenant: Tenant) -> str:
    key = make_key(client, tenant, "member")
    key_id = client.get("/v1/me", headers=key.headers).json()["key"]["id"]
    client.delete(f"/v1/api-keys/{key_id}", headers=tenant.headers).raise_for_status()
    return key.key


def _expired(client: TestClient, tenant: Tenant) -> str:
    key = make_key(client, tenant, "member", expires_in_days=1)
    past = utcnow() - timedelta(seconds=1)
    _sql(client, "UPDATE api_keys SET expires_at = :t WHERE prefix = :p", t=past, p=key.key[:13])
    return key.key


BAD_HEADERS: dict[str, Callable[[TestClient, Tenant], dict[str, str]]] = {
    "missing": lambda c, t: {},
    "empty bearer": lambda c, t: {"Authorization": "Bearer "},
    "basic scheme": lambda c, t: {"Authorization": f"Basic {t.key}"},
    "not a key": lambda c, t: {"Authorization": "Bearer hello"},
    "huge": lambda c, t: {"Authorization": "Bearer tp_" + "x" * 8000},
    "unknown": lambda c, t: {"Authorization": f"Bearer tp_{secrets.token_urlsafe(32)}"},
    "revoked": lambda c, t: {"Authorization": f"Bearer {_revoked(c, t)}"},
    "expired": lambda c, t: {"Authorization": f"Bearer {_expired(c, t)}"},
}


@pytest.mark.parametrize("case", BAD_HEADERS)
def test_every_bad_key_gets_the_same_401(client: TestClient, tenant: Tenant, case: str) -> None:
    reference = _unauthenticated_shape(client, {})
    assert _unauthenticated_shape(client, BAD_HEADERS[case](client, tenant)) == reference


def test_a_revoked_key_stops_working_at_once(client: TestClient, tenant: Tenant) -> None:
    member = make_key(client, tenant, "member")
    assert client.get("/v1/me", headers=member.headers).status_code == 200
    key_id = client.get("/v1/me", headers=member.headers).json()["key"]["id"]
    assert client.delete(f"/v1/api-keys/{key_id}", headers=tenant.headers).status_code == 204
    assert_problem(client.get("/v1/me", headers=member.headers), 401, "unauthenticated")


def test_the_full_key_appears_only_in_the_create_response(
    client: TestClient, tenant: Tenant
) -> None:
    created = client.post("/v1/api-keys", json={"name": "ci"}, headers=tenant.headers).json()
    secret = created["key"]
    assert secret.startswith("tp_")
    assert len(secret) >= 3 + 43
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {secret}"})
    listed = client.get("/v1/api-keys", headers=tenant.headers)
    assert secret not in me.text
    assert secret not in listed.text
    assert secret[3:] not in listed.text


def test_the_key_list_shows_prefix_and_last_use(client: TestClient, tenant: Tenant) -> None:
    created = client.post("/v1/api-keys", json={"name": "ci"}, headers=tenant.headers).json()
    before = {k["id"]: k for k in client.get("/v1/api-keys", headers=tenant.headers).json()}
    assert before[created["id"]]["last_used_at"] is None
    client.get("/v1/runs", headers={"Authorization": f"Bearer {created['key']}"})
    after = {k["id"]: k for k in client.get("/v1/api-keys", headers=tenant.headers).json()}
    listed = after[created["id"]]
    assert listed["prefix"] == created["key"][: len(listed["prefix"])]
    assert 8 <= len(listed["prefix"]) < 20
    assert listed["last_used_at"] is not None


def test_only_the_sha256_digest_is_stored(client: TestClient, tenant: Tenant) -> None:
    created = client.post("/v1/api-keys", json={"name": "ci"}, headers=tenant.headers).json()
    rows = _sql(client, "SELECT * FROM api_keys WHERE id = :id", id=created["id"])
    stored = " ".join(str(value) for value in rows[0])
    assert hashlib.sha256(created["key"].encode()).hexdigest() in stored
    assert created["key"] not in stored
    assert created["key"][3:] not in stored


def test_a_slow_transaction_using_a_key_does_not_stall_its_other_requests(
    client: TestClient, server_b: LiveServer, tenant: Tenant
) -> None:
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as slow:
        authenticate(slow, tenant.key, touch_interval_s=0)  # touches the key and stays open
        response = httpx.get(f"{server_b.url}/v1/me", headers=tenant.headers, timeout=5)
    assert response.status_code == 200
