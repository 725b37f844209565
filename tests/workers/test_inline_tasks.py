"""The embedded relay runs a created run's admission pass and its launch in its own thread.

Before (issue 17), a run created on the embedded platform waited for the relay's poll, went into
the broker's file as a schedule task, waited for a consumer's poll, and came back out; the
launch the pass wrote did the same unless the worker's own drain caught it. Now the relay's
publisher runs both tasks itself, and only a task that raises is handed to the broker.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from core import db, migrate
from core.db import session_scope
from core.models import Run, RunAttempt
from core.settings import Settings
from tests.factories import create_run, make_tenant
from tests.support.databases import write_lock_held
from workers import reconciler, relay, tasks
from workers.launch_code import code_for_launch
from workers.reconciler import WorkerContext

Sent = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, Settings, sessionmaker[Session]]]:
    """An embedded database, the API on it, and this process as its worker (its context)."""
    url = f"sqlite:///{tmp_path / 'trainport.db'}"
    migrate.upgrade(url)
    settings = Settings(
        database_url=url, broker_url="", state_dir=tmp_path / "state", sandbox="off",
        local_cpu_slots=2, key_touch_interval_seconds=0,
    )  # fmt: skip
    factory = db.make_sessionmaker(db.build_engine(settings))
    context = WorkerContext(factory, settings, tasks._executors(settings))
    monkeypatch.setattr(tasks, "_contexts", {os.getpid(): context})
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, settings, factory


def run_state(factory: sessionmaker[Session], run_id: str) -> tuple[str, RunAttempt | None]:
    with session_scope(factory) as session:
        run = session.get(Run, run_id)
        assert run is not None
        attempt = session.get(RunAttempt, (run_id, 1))
        if attempt is not None:
            session.expunge(attempt)
        return run.status, attempt


def test_a_created_run_is_admitted_and_launched_in_the_relays_thread(
    embedded: tuple[TestClient, Settings, sessionmaker[Session]],
) -> None:
    client, settings, factory = embedded
    tenant = make_tenant(client)
    run = create_run(client, tenant, command=[sys.executable, "-c", "print(1)"])
    sent: Sent = []
    publish = tasks.publisher(settings, lambda task, payload: sent.append((task, payload)))
    relay.drain(factory, publish)  # what the embedded relay's round does with the created row
    status, attempt = run_state(factory, run["id"])
    assert status in {"starting", "running", "succeeded"}  # admitted and launched: no broker
    assert attempt is not None
    assert attempt.started_at is not None  # the launch had returned
    deadline = time.monotonic() + 30
    while status != "succeeded" and time.monotonic() < deadline:  # bounded: the shim's exit
        time.sleep(0.05)  # settles it (the executor asks for a reconcile pass at once)
        status, _ = run_state(factory, run["id"])
    assert status == "succeeded"
    assert sent == []  # nothing went through the broker


def test_a_task_that_raises_in_the_relays_thread_goes_to_the_broker(
    embedded: tuple[TestClient, Settings, sessionmaker[Session]],
) -> None:
    _, settings, _ = embedded
    sent: Sent = []
    publish = tasks.publisher(settings, lambda task, payload: sent.append((task, payload)))
    publish("trainport.launch", {"run_id": "run_does_not_exist"})  # no attempt: a TypeError
    publish("trainport.prune_outbox", {})  # not run inline at all
    assert sent == [
        ("trainport.launch", {"run_id": "run_does_not_exist"}),
        ("trainport.prune_outbox", {}),
    ]


def test_with_a_broker_every_task_goes_to_it(tmp_path: Path) -> None:
    """Its redelivery after a worker died must be the task itself (test_overdue_tasks.py)."""
    sent: Sent = []
    settings = Settings(broker_url="redis://127.0.0.1:6379/0", state_dir=tmp_path)
    publish = tasks.publisher(settings, lambda task, payload: sent.append((task, payload)))
    publish("trainport.schedule", {"run_id": "run_x"})
    publish("trainport.launch", {"run_id": "run_x", "attempt": 1})
    assert sent == [
        ("trainport.schedule", {"run_id": "run_x"}),
        ("trainport.launch", {"run_id": "run_x", "attempt": 1}),
    ]


def _passes() -> float:
    """Admission passes this process has run (the histogram's count)."""
    value = REGISTRY.get_sample_value("trainport_admission_pass_duration_seconds_count")
    return value or 0.0


def _run_to_the_end(
    client: TestClient, settings: Settings, factory: sessionmaker[Session], count: int
) -> list[str]:
    tenant = make_tenant(client)
    ids = [create_run(client, tenant, command=[sys.executable, "-c", "print(1)"])["id"]]
    ids += [create_run(client, tenant, command=[sys.executable, "-c", "print(1)"])["id"]
            for _ in range(count - 1)]  # fmt: skip
    relay.drain(factory, tasks.publisher(settings))  # the created runs' schedule tasks
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded: each shim's exit settles its run
        if all(run_state(factory, run_id)[0] == "succeeded" for run_id in ids):
            return ids
        time.sleep(0.05)
    raise AssertionError([run_state(factory, run_id)[0] for run_id in ids])


def test_a_run_that_ends_with_nothing_waiting_costs_no_admission_pass(
    embedded: tuple[TestClient, Settings, sessionmaker[Session]],
) -> None:
    """Before, every settled run was followed by a whole admission pass (three write
    transactions), a quarter of the embedded workers' CPU when runs came one at a time."""
    client, settings, factory = embedded
    before = _passes()
    _run_to_the_end(client, settings, factory, 1)
    assert _passes() - before == 1  # its own, at creation; none after it ended


def test_a_run_that_ends_admits_the_one_waiting_for_its_slot(
    embedded: tuple[TestClient, Settings, sessionmaker[Session]],
) -> None:
    client, settings, factory = embedded  # 2 CPU slots: the third run waits, queued
    _run_to_the_end(client, settings, factory, 3)  # no beat here: the settle admitted it


def test_the_worker_s_read_only_steps_do_not_wait_for_the_write_lock(
    embedded: tuple[TestClient, Settings, sessionmaker[Session]],
) -> None:
    """What a settle's pass and a launch only read (the clusters, the active runs and their
    metrics specs, whether anything waits, a launch's code) reads the last commit beside an
    open write transaction (the API's submit, another step) instead of queueing behind it."""
    client, settings, factory = embedded
    tenant = make_tenant(client)
    run = create_run(client, tenant, command=[sys.executable, "-c", "print(1)"])
    context = tasks.context()
    touch = "UPDATE runs SET updated_at = updated_at WHERE id = :id"
    with write_lock_held(factory.kw["bind"], touch, {"id": run["id"]}):
        started = time.monotonic()
        assert tasks._anything_waiting(context)  # the run is pending
        observed = reconciler._observe(context)
        assert code_for_launch(factory, settings, run["id"]) is None  # it ships no code
        waited = time.monotonic() - started
    assert observed == {}
    assert waited < 1.0, waited


def test_a_drain_with_nothing_to_send_does_not_wait_for_the_write_lock(
    embedded: tuple[TestClient, Settings, sessionmaker[Session]],
) -> None:
    """Every settle's pass drains the outbox, and the relay on every wake-up: with nothing
    unsent, one read says so, where a claim took the write lock (behind the API's submits)."""
    _, _, factory = embedded
    relay.drain(factory, lambda _task, _payload: None)  # whatever was there, sent
    sent: Sent = []
    with write_lock_held(factory.kw["bind"], "UPDATE outbox SET sent_at = sent_at"):
        started = time.monotonic()
        assert relay.drain(factory, lambda task, payload: sent.append((task, payload))) == 0
        waited = time.monotonic() - started
    assert sent == []
    assert waited < 1.0, waited
