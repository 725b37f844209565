"""The hand-off: outbox rows written with the change, relays that share the work, and the
bound on a launch that keeps killing its worker."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import deliveries, outbox
from core.db import session_scope
from core.logs import LogStore
from core.models import OutboxMessage, Run
from core.scheduling.admission import accept_pending, admit_queued_runs
from core.scheduling.clusters import sync_local_cluster
from core.settings import Settings
from tests.factories import Tenant, create_run, make_tenant
from workers import relay
from workers.executors.local import LocalExecutor
from workers.reconciler import WorkerContext, launch_attempt

Factory = sessionmaker[Session]


def rows(factory: Factory) -> list[tuple[str, dict[str, Any]]]:
    with session_scope(factory) as session:
        found = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return [(row.task, dict(row.payload)) for row in found]


def started_run(client: TestClient, factory: Factory, tenant: Tenant | None = None) -> str:
    """A run admitted onto the local cluster: `starting`, attempt 1, launch not yet done."""
    run_id: str = create_run(client, tenant or make_tenant(client))["id"]
    settings = Settings(database_url="postgresql://unused", local_cpu_slots=2)
    with session_scope(factory) as session:
        sync_local_cluster(session, settings)
        accept_pending(session, [run_id])
        admit_queued_runs(session, settings)
    return run_id


def test_creating_a_run_commits_a_schedule_task_with_it(
    fresh_client: TestClient, factory: Factory
) -> None:
    tenant = make_tenant(fresh_client)
    run = create_run(fresh_client, tenant)
    refused = fresh_client.post(
        "/v1/runs", json={"command": ["true"], "project": "nope"}, headers=tenant.headers
    )
    assert refused.status_code == 404  # rolled back: it leaves no task behind
    assert rows(factory) == [(outbox.Task.SCHEDULE, {"run_id": run["id"]})]


def test_cancelling_a_started_run_asks_the_workers_to_stop_it(
    fresh_client: TestClient, factory: Factory
) -> None:
    tenant = make_tenant(fresh_client)
    started = started_run(fresh_client, factory, tenant)
    waiting = create_run(fresh_client, tenant)["id"]
    assert (outbox.Task.LAUNCH, {"run_id": started, "attempt": 1}) in rows(factory)
    stopping = fresh_client.post(f"/v1/runs/{started}/cancel", headers=tenant.headers).json()
    cancelled = fresh_client.post(f"/v1/runs/{waiting}/cancel", headers=tenant.headers).json()
    assert (stopping["status"], cancelled["status"]) == ("stopping", "cancelled")
    stops = [payload for task, payload in rows(factory) if task == outbox.Task.STOP]
    assert stops == [{"run_id": started, "attempt": 1}]  # nothing ran for the other one


def test_two_relays_publish_every_row_exactly_once(factory: Factory) -> None:
    with session_scope(factory) as session:
        for number in range(300):
            outbox.enqueue(session, outbox.Task.SCHEDULE, number=number)
    published: list[list[int]] = [[], []]
    both_hold_a_batch = threading.Barrier(2, timeout=10)

    def run_relay(mine: list[int]) -> None:
        def publish(_task: str, payload: dict[str, Any]) -> None:
            if not mine:  # each relay's first message waits until the other holds a batch too
                both_hold_a_batch.wait()
            mine.append(payload["number"])

        relay.drain(factory, publish, batch=20)

    threads = [threading.Thread(target=run_relay, args=(mine,)) for mine in published]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(published[0] + published[1]) == list(range(300))  # each row exactly once
    assert not set(published[0][:20]) & set(published[1][:20])  # concurrent claims are disjoint
    with session_scope(factory) as session:
        assert outbox.unsent_count(session) == 0


def test_rows_the_broker_refuses_stay_unsent_until_it_takes_them(factory: Factory) -> None:
    with session_scope(factory) as session:
        for number in range(5):
            outbox.enqueue(session, outbox.Task.SCHEDULE, number=number)
    accepted: list[int] = []

    def flaky_broker(_task: str, payload: dict[str, Any]) -> None:
        if len(accepted) == 2:
            raise ConnectionError("broker down")
        accepted.append(payload["number"])

    with pytest.raises(relay.BrokerUnavailable):
        relay.drain(factory, flaky_broker)
    with session_scope(factory) as session:
        assert outbox.unsent_count(session) == 3
    assert relay.drain(factory, lambda _task, payload: accepted.append(payload["number"])) == 3
    assert accepted == [0, 1, 2, 3, 4]


def test_the_relay_loop_logs_the_rows_it_published_and_touches_its_heartbeat(
    fresh_url: str, factory: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Operators (and tests/deploy/test_compose_processes.py) tell the relay's deliveries from
    the workers' own drains by its log; the liveness probe watches the heartbeat file."""
    caplog.set_level(logging.INFO, logger="trainport.relay")
    published: list[dict[str, Any]] = []
    heartbeat = tmp_path / "relay-heartbeat"
    loop = relay.Relay(
        Settings(database_url=fresh_url),
        lambda _task, payload: published.append(payload),
        heartbeat=heartbeat,
    )
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        with session_scope(factory) as session:  # committed together: one NOTIFY, one round
            for number in range(3):
                outbox.enqueue(session, outbox.Task.SCHEDULE, number=number)
            ids = [row.id for row in session.scalars(select(OutboxMessage)).all()]
        deadline = time.monotonic() + 10
        while len(published) < 3 and time.monotonic() < deadline:  # bounded: another thread
            time.sleep(0.01)
    finally:
        loop.stop()
        thread.join(timeout=10)
    assert [payload["number"] for payload in published] == [0, 1, 2]
    assert heartbeat.exists()
    assert f"published 3 outbox row(s): {min(ids)}-{max(ids)}" in caplog.text


def test_id_ranges_compact_the_published_ids() -> None:
    assert relay.id_ranges([]) == ""
    assert relay.id_ranges([11, 7, 9, 8]) == "7-9, 11"
    assert relay.id_ranges([3]) == "3"


def test_a_launch_that_keeps_killing_its_worker_fails_the_run(
    fresh_client: TestClient, factory: Factory, tmp_path: Path
) -> None:
    run_id = started_run(fresh_client, factory)
    settings = Settings(database_url="postgresql://unused", max_task_deliveries=5)
    for _ in range(5):  # five deliveries that died before finishing
        with session_scope(factory) as session:
            deliveries.record_delivery(session, outbox.Task.LAUNCH, run_id, 1)
    executor = LocalExecutor(tmp_path / "state", LogStore(tmp_path / "logs"), "")
    context = WorkerContext(factory, settings, lambda _where: executor)
    assert launch_attempt(context, run_id, 1) == "gave up"
    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert (run.status, run.status_reason) == ("failed", "system_error")
        assert "delivered 6 times" in (run.status_message or "")
        assert run.attempts[0].outcome == "system_failed"
    assert executor.observe() == []  # nothing was started
