"""With PostgreSQL unreachable, data routes answer 503 problem+json with Retry-After, not 500.

The API here points at a port where nothing listens, so every connection is refused for real,
on the event-loop path (asyncpg) and on the threadpool path (SQLAlchemy + psycopg) alike.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from tests.api.expect import assert_problem
from tests.factories import run_spec

A_KEY = {"Authorization": "Bearer tp_" + "k" * 43}  # well-formed: it gets as far as a lookup
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/runs/run_01j0000000000000000000000", None),
    ("GET", "/v1/runs", None),
    ("GET", "/v1/runs?changed_since=0", None),
    ("POST", "/v1/runs", run_spec()),
    ("POST", "/v1/runs/run_01j0000000000000000000000/cancel", None),
    ("GET", "/v1/projects", None),
    ("GET", "/v1/me", None),
]


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module", params=[True, False], ids=["event-loop", "threadpool"])
def down(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    root: Path = tmp_path_factory.mktemp("down")
    settings = Settings(
        database_url=f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/trainport",
        state_dir=root / "state",
        storage_dir=root / "storage",
        async_reads=request.param,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_a_data_route_answers_503_with_retry_after(
    down: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = down.request(method, path, json=body, headers=A_KEY)
    problem = assert_problem(response, 503, "database_unavailable")
    assert response.headers["Retry-After"] == "1"
    assert "retry" in problem["detail"]
    assert "psycopg" not in response.text
    assert "asyncpg" not in response.text


def test_health_still_answers_and_readiness_says_why(down: TestClient) -> None:
    assert down.get("/healthz").status_code == 200
    ready = down.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["database"] == "unreachable"
