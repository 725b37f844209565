"""Prometheus metrics (issue 19), scraped and parsed by the real `prometheus_client` parser.

The workers' endpoint is served by a real worker tree (`TRAINPORT_WORKER_METRICS_PORT`) that
ran a few runs; the API's `/metrics` shows its requests and the platform's gauges, read from
the database (runs by org and status, the queue, the outbox, GPUs against capacity).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.app_state import app_engine
from core.models import Cluster, Run, RunAttempt
from core.runs.states import RunStatus, StatusReason, transition
from core.settings import Settings
from tests.factories import create_run, make_tenant
from tests.support.platforms import StartPlatform, wait_for_run

TOKEN = "scrape-me-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(found: list[Sample], name: str, **labels: str) -> float:
    matching = [
        s.value
        for s in found
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert matching, f"no sample {name}{labels}"
    return sum(matching)


def delta(before: list[Sample], after: list[Sample], name: str, **labels: str) -> float:
    try:
        earlier = value(before, name, **labels)
    except AssertionError:  # not seen before
        earlier = 0.0
    return value(after, name, **labels) - earlier


@pytest.fixture
def metrics_client(fresh_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=fresh_url,
        key_touch_interval_seconds=0,
        metrics_enabled=True,
        metrics_token=TOKEN,
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    app_engine(app).dispose()


def scrape(client: TestClient) -> list[Sample]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def test_metrics_are_off_unless_enabled_and_need_the_token(
    fresh_client: TestClient, metrics_client: TestClient
) -> None:
    assert fresh_client.get("/metrics").status_code == 404
    assert metrics_client.get("/metrics").status_code == 401
    wrong = metrics_client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_the_api_shows_requests_and_the_platforms_gauges(
    metrics_client: TestClient, factory: sessionmaker[Session]
) -> None:
    before = scrape(metrics_client)  # the process's counters also hold other tests' requests
    tenant = make_tenant(metrics_client)
    runs = [create_run(metrics_client, tenant, scheduling={"priority": "high"}) for _ in range(3)]
    metrics_client.get(f"/v1/runs/{runs[0]['id']}", headers=tenant.headers)
    metrics_client.get("/v1/no-such-thing", headers=tenant.headers)
    with factory() as session, session.begin():
        session.add(Cluster(name="gpu-a", executor="local", inventory={"gpus": {"a100": 8}}))
        queued = session.get(Run, runs[0]["id"])
        assert queued is not None
        transition(session, queued, RunStatus.QUEUED, StatusReason.QUEUED_FOR_CAPACITY)
        session.add(
            RunAttempt(
                run_id=runs[1]["id"],
                attempt=1,
                org_id=tenant.org_id,
                project_id=runs[1]["project_id"],
                cluster="gpu-a",
                gpu_type="a100",
                gpus=2,
            )
        )
    found = scrape(metrics_client)
    http = "trainport_http_requests_total"
    posted = {"route": "/v1/runs", "method": "POST"}
    assert delta(before, found, http, **posted, status="201") == 3
    assert delta(before, found, http, route="/v1/runs/{run_id}", method="GET", status="200") >= 1
    assert delta(before, found, http, route="unmatched", status="404") >= 1
    assert not [s for s in found if runs[0]["id"] in str(s.labels)]  # no run ids in labels
    assert delta(before, found, "trainport_http_request_duration_seconds_count", **posted) == 3
    assert value(found, "trainport_runs", org=tenant.org_id, status="pending") == 2
    assert value(found, "trainport_runs", org=tenant.org_id, status="queued") == 1
    assert value(found, "trainport_queue_depth", priority="high") == 1
    assert value(found, "trainport_queue_oldest_wait_seconds", priority="high") >= 0
    assert value(found, "trainport_outbox_backlog") >= 3  # no relay runs here
    assert value(found, "trainport_relay_lag_seconds") > 0
    assert value(found, "trainport_gpus_capacity", cluster="gpu-a", gpu_type="a100") == 8
    assert value(found, "trainport_gpus_allocated", cluster="gpu-a", gpu_type="a100") == 2
    assert value(found, "trainport_event_streams_open") == 0
    assert value(found, "trainport_long_polls_open") == 0


def test_the_workers_endpoint_shows_passes_and_launches(
    start_platform: StartPlatform, fresh_url: str, fresh_client: TestClient
) -> None:
    port = _free_port()
    platform = start_platform(fresh_url, worker_metrics_port=str(port), log_format="json")
    tenant = make_tenant(fresh_client)
    ok = [
        create_run(fresh_client, tenant, command=[sys.executable, "-c", "print(1)"])
        for _ in range(2)
    ]
    bad = create_run(fresh_client, tenant, command=[sys.executable, "-c", "raise SystemExit(3)"])
    for run in ok:
        assert (
            wait_for_run(fresh_client, tenant, run["id"], {"succeeded", "failed"})["status"]
            == "succeeded"
        )
    assert (
        wait_for_run(fresh_client, tenant, bad["id"], {"succeeded", "failed"})["status"] == "failed"
    )
    found = _scrape_until(
        port, lambda f: _has(f, "trainport_reconcile_pass_duration_seconds_count")
    )
    assert value(found, "trainport_admission_pass_duration_seconds_count") >= 1
    assert value(found, "trainport_reconcile_pass_duration_seconds_count") >= 1
    assert value(found, "trainport_launches_total", outcome="launched") >= 3
    assert (
        value(found, "trainport_runs_finished_total", status="succeeded", reason="completed") == 2
    )
    assert value(found, "trainport_runs_finished_total", status="failed") == 1
    assert value(found, "trainport_reconcile_last_success_timestamp_seconds") > time.time() - 60
    # TRAINPORT_LOG_FORMAT=json: the worker's lines (ours and Celery's) are JSON objects.
    logged = [json.loads(line) for line in platform.log_text().splitlines() if line.startswith("{")]
    assert any(line["logger"] == "trainport.lifecycle" for line in logged)
    assert any(line["logger"].startswith("celery") for line in logged)


def _has(found: list[Sample], name: str) -> bool:
    return any(s.name == name and s.value > 0 for s in found)


def _scrape_until(port: int, ready: Any, timeout: float = 30.0) -> list[Sample]:
    deadline = time.monotonic() + timeout
    while True:
        found = samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
        if ready(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)  # a bounded poll: beat's next reconcile pass has no event to wait on
