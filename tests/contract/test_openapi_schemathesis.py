"""The published OpenAPI document is the contract: generated requests against every operation
never get a server error, and every response (errors included) matches what the document says.

And the document states every rule the API applies (issue 15): Schemathesis with all its checks
(schema-valid requests accepted, schema-violating ones refused, `Allow`, use after free, ...)
and its stateful phase finds nothing against a live API process, within a time box.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from api.app import create_app
from api.app_state import app_engine, app_sessionmaker
from core.db import session_scope
from core.settings import Settings
from core.tenants.service import bootstrap
from tests.support.servers import ROOT, StartServer

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@pytest.fixture(scope="module")
def contract_app(postgres_url: str) -> Iterator[FastAPI]:
    app = create_app(Settings(database_url=postgres_url, long_poll_max_seconds=1))
    yield app
    app_engine(app).dispose()


@pytest.fixture(scope="module")
def http_only(contract_app: FastAPI) -> ASGIApp:
    """The app without its lifespan: schemathesis would restart it (and its change listener,
    about a second each) around every operation, and the contract is about HTTP alone."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")  # how an ASGI app says it has none
        await contract_app(scope, receive, send)

    return app


@pytest.fixture(scope="module")
def admin_headers(contract_app: FastAPI) -> dict[str, str]:
    with session_scope(app_sessionmaker(contract_app)) as session:
        made = bootstrap(session, "contract-org")
    return {"Authorization": f"Bearer {made.secret}"}


def _published_document() -> dict[str, Any]:
    """The document as the app publishes it; building it touches no database."""
    document: dict[str, Any] = create_app(Settings(database_url="sqlite:///:memory:")).openapi()
    return document


# Loaded at import so pytest lists one test per operation; requests go to `http_only`. (The lazy
# `schemathesis.pytest.from_fixture` loader would fit better but fails on pytest 9: it writes
# `Node._nodeid`, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_dict(_published_document())


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_honours_the_published_contract(
    case: schemathesis.Case[Any], http_only: ASGIApp, admin_headers: dict[str, str]
) -> None:
    case.call_and_validate(app=http_only, headers=admin_headers, checks=CHECKS)


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in document["paths"].values() for op in path.values()]


def test_the_document_is_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")


def test_operation_ids_are_unique_snake_case_names(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for op in _operations(document)]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if not SNAKE_CASE.match(i)] == []
    assert {"create_run", "list_runs", "get_run", "cancel_run", "update_run", "delete_run"} <= set(
        ids
    )


def test_every_documented_error_is_a_problem_document(document: dict[str, Any]) -> None:
    errors = [
        (op["operationId"], status, response.get("content", {}))
        for op in _operations(document)
        for status, response in op["responses"].items()
        if status.startswith(("4", "5")) and response.get("content")
    ]
    assert errors, "no operation documents an error"
    for operation_id, status, content in errors:
        assert list(content) == ["application/problem+json"], (operation_id, status)
        assert content["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    assert "HTTPValidationError" not in document["components"]["schemas"]


# Seconds for the generated phases, then for the stateful one (which chains real operations:
# create a run, then read, edit, cancel and delete it), so that neither starves the other.
PHASE_SECONDS = {"examples,coverage,fuzzing": 35, "stateful": 25}
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def test_all_checks_and_the_stateful_phase_find_nothing(
    start_server: StartServer, postgres_url: str, admin_headers: dict[str, str]
) -> None:
    """The CLI run a user would make (`st run --checks all`), time-boxed; limits that would
    only throttle the generator are lifted."""
    server = start_server(
        postgres_url,
        rate_limit_enabled="false",
        max_waiting_runs_per_org="1000000",
        long_poll_max_seconds="1",
    )
    cli = Path(sys.executable).with_name("schemathesis")
    for phases, seconds in PHASE_SECONDS.items():
        command = [
            str(cli), "--config-file", str(CONFIG), "run", f"{server.url}/openapi.json",
            "--checks", "all", "--phases", phases, "--max-time", str(seconds),
            "--workers", "1", "--seed", "15", "--suppress-health-check", "all", "--no-color",
            "-H", f"Authorization: {admin_headers['Authorization']}",
        ]  # fmt: skip
        env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "PYTHONPATH": str(ROOT)}
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds * 4, env=env)
        report = done.stdout + done.stderr
        assert done.returncode == 0, report[-12000:]
        ran = [f"✅ {phase.title()}" for phase in phases.split(",")]
        assert all(line in report for line in ran), report[-4000:]
