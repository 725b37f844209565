"""Unexpected errors and probes: a 500 says only a request id, which the server log also has."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.app import create_app
from core.settings import Settings
from tests.api.expect import assert_problem
from tests.support.servers import LiveServer, StartServer

UNREACHABLE_URL = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


@pytest.fixture(scope="module")
def unmigrated_server(start_server: StartServer, postgres_url: str) -> Iterator[LiveServer]:
    """An API process on a database that exists but has no tables: every query fails."""
    name = f"trainport_empty_{secrets.token_hex(4)}"
    server = make_url(postgres_url)
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield start_server(server.set(database=name).render_as_string(hide_password=False))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_unexpected_error_is_a_500_problem_with_a_logged_request_id(
    unmigrated_server: LiveServer,
) -> None:
    key = f"tp_{secrets.token_urlsafe(32)}"
    response = httpx.get(
        f"{unmigrated_server.url}/v1/runs", headers={"Authorization": f"Bearer {key}"}
    )
    problem = assert_problem(response, 500, "internal_error")
    request_id = problem["request_id"]
    assert request_id
    assert response.headers["X-Request-Id"] == request_id
    assert request_id in problem["detail"]
    assert "api_keys" not in response.text  # the failing table is not named to the client
    log = unmigrated_server.log_text()
    assert f"request_id={request_id}" in log
    assert "UndefinedTable" in log  # ...but the operator sees the whole story


def test_a_500_keeps_the_callers_request_id(unmigrated_server: LiveServer) -> None:
    key = f"tp_{secrets.token_urlsafe(32)}"
    headers = {"Authorization": f"Bearer {key}", "X-Request-Id": "trace42"}
    response = httpx.get(f"{unmigrated_server.url}/v1/me", headers=headers)
    assert assert_problem(response, 500)["request_id"] == "trace42"
    assert "request_id=trace42" in unmigrated_server.log_text()


def test_healthz_answers_200(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_answers_200_with_the_database_up(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_readyz_answers_503_without_the_database() -> None:
    app = create_app(Settings(database_url=UNREACHABLE_URL))
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: nothing to listen to
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
    assert client.get("/healthz").status_code == 200


def test_an_unknown_route_is_a_404_problem(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")


def test_a_wrong_method_is_a_405_problem(client: TestClient) -> None:
    assert_problem(client.put("/v1/runs"), 405, "method_not_allowed")


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    assert len(client.get("/healthz").headers["X-Request-Id"]) >= 8
    assert client.get("/healthz", headers={"X-Request-Id": "abc123"}).headers["X-Request-Id"] == (
        "abc123"
    )
