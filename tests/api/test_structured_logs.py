"""Structured logs (issue 19): JSON lines carrying their ids, and never a secret.

Requests run with an admin key, a second key, a run token, a secret's value and a bogus key;
everything the root logger receives meanwhile (at DEBUG, so nothing is filtered out by level)
is captured through the handler the processes use, then parsed and searched.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app_state import app_settings
from core import process_logging
from core.runs import run_tokens
from core.settings import Settings
from tests.factories import Tenant, app_of, create_run, make_key, make_tenant
from workers.reconciler import _isolated


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    handler = process_logging.handler(Settings(log_format="json"), sink)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield sink
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(sink: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.getvalue().splitlines() if line.strip()]


def test_each_request_logs_one_json_access_line_with_its_ids(
    client: TestClient, tenant: Tenant, captured: io.StringIO
) -> None:
    headers = {**tenant.headers, "X-Request-ID": "trace0123456789"}
    response = client.post(
        "/v1/runs", json={"image": "busybox", "command": ["true"]}, headers=headers
    )
    assert response.status_code == 201
    assert response.headers["X-Request-Id"] == "trace0123456789"
    minted = client.get(f"/v1/runs/{response.json()['id']}", headers=tenant.headers)
    access = [line for line in lines(captured) if line["logger"] == "trainport.access"]
    first = next(line for line in access if line.get("request_id") == "trace0123456789")
    assert first["org_id"] == tenant.org_id
    assert (first["route"], first["method"], first["status"]) == ("/v1/runs", "POST", 201)
    assert first["duration_ms"] > 0
    second = next(line for line in access if line["route"] == "/v1/runs/{run_id}")
    assert second["request_id"] == minted.headers["X-Request-Id"]
    assert second["request_id"] != first["request_id"]
    assert len([line for line in access if line.get("request_id") == "trace0123456789"]) == 1


def test_no_key_token_or_secret_value_is_ever_logged(
    client: TestClient, captured: io.StringIO
) -> None:
    tenant = make_tenant(client)
    viewer = make_key(client, tenant, "viewer")
    value = f"canary-{secrets.token_hex(16)}"
    body = {"name": "DB_PASSWORD", "value": value}
    assert client.post("/v1/secrets", json=body, headers=tenant.headers).status_code == 201
    assert (
        client.post(
            "/v1/secrets", json={"name": "BAD NAME", "value": value}, headers=tenant.headers
        ).status_code
        == 422
    )
    run = create_run(client, tenant)
    app = app_of(client)
    token = run_tokens.issue(app_settings(app).secret_key.get_secret_value(), run["id"], 0)
    client.get(f"/v1/runs/{run['id']}", headers={"Authorization": f"Bearer {token}"})
    client.get("/v1/runs", headers=viewer.headers)
    bogus = "tp_" + secrets.token_urlsafe(32)
    assert client.get("/v1/runs", headers={"Authorization": f"Bearer {bogus}"}).status_code == 401
    # Should a secret ever reach a message (an exception's text, a library's line), it is masked.
    logging.getLogger("trainport.test").warning("the client sent %s and %s", tenant.key, token)
    text = captured.getvalue()
    assert lines(captured)  # parsed, every one
    for secret in (tenant.key, viewer.key, value, token, bogus):
        assert secret not in text
    assert "[redacted]" in text


def test_a_worker_line_about_a_run_carries_its_id_and_attempt(captured: io.StringIO) -> None:
    def step() -> bool:
        logging.getLogger("trainport.reconciler").warning("checking")
        raise RuntimeError("the cluster said no")

    assert _isolated("reconciling", "run_01TESTRUN", 3, step) is False
    about_run = [line for line in lines(captured) if line["logger"] == "trainport.reconciler"]
    assert len(about_run) == 2  # its own line, and the pass's report of the failure
    assert all((line["run_id"], line["attempt"]) == ("run_01TESTRUN", 3) for line in about_run)
    assert "the cluster said no" in about_run[1]["exception"]


def test_text_is_the_default_format_and_shows_the_run(captured: io.StringIO) -> None:
    sink = io.StringIO()
    handler = process_logging.handler(Settings(), sink)
    record = logging.makeLogRecord(
        {"name": "trainport.tasks", "levelname": "INFO", "msg": "launched"}
    )
    with process_logging.run_context("run_01X", 1):
        handler.handle(record)
    assert sink.getvalue().strip() == "INFO:trainport.tasks:launched [run run_01X attempt 1]"
