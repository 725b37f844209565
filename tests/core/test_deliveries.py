"""The task-delivery ledger (core/deliveries.py), on PostgreSQL and SQLite: each delivery of a
launch is counted before the work starts, a finished one is never done again, and counting is
one statement (it was a locked read, a savepoint, an insert and an update: issue 17)."""

from __future__ import annotations

from contextlib import AbstractContextManager

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app_state import app_sessionmaker
from core import deliveries
from core.db import session_scope
from core.outbox import Task
from tests.factories import app_of, create_run, make_tenant
from tests.support.databases import statements_run


def statements(any_client: TestClient) -> AbstractContextManager[list[str]]:
    """The SQL statements the app's engine runs meanwhile."""
    return statements_run(app_sessionmaker(app_of(any_client)).kw["bind"])


def verbs(statements: list[str]) -> list[str]:
    """Each statement's first word, BEGIN left out."""
    return [s.split()[0].upper() for s in statements if s.split()[0].upper() != "BEGIN"]


def count(session: Session, run_id: str, attempt: int = 1) -> int | None:
    return deliveries.record_delivery(session, Task.LAUNCH, run_id, attempt)


def test_each_delivery_counts_until_the_work_is_done(any_client: TestClient) -> None:
    run_id = create_run(any_client, make_tenant(any_client))["id"]
    factory = app_sessionmaker(app_of(any_client))
    with session_scope(factory) as session:
        assert count(session, run_id) == 1
    with session_scope(factory) as session:
        assert count(session, run_id) == 2
        assert count(session, run_id, attempt=2) == 1  # each attempt its own
    with session_scope(factory) as session:
        deliveries.complete_delivery(session, Task.LAUNCH, run_id, 1)
    with session_scope(factory) as session:
        assert count(session, run_id) is None  # done: never again
        state = deliveries.delivery_state(session, Task.LAUNCH, run_id, 1)
        assert state is not None
        assert state.deliveries == 2
        assert state.completed_at is not None
        finished = state.completed_at
    with session_scope(factory) as session:
        deliveries.complete_delivery(session, Task.LAUNCH, run_id, 1)  # again: unchanged
    with session_scope(factory) as session:
        state = deliveries.delivery_state(session, Task.LAUNCH, run_id, 1)
        assert state is not None
        assert state.completed_at == finished


def test_counting_and_completing_are_one_statement_each(any_client: TestClient) -> None:
    run_id = create_run(any_client, make_tenant(any_client))["id"]
    factory = app_sessionmaker(app_of(any_client))
    with session_scope(factory) as session:
        with statements(any_client) as first:
            assert count(session, run_id) == 1
        with statements(any_client) as done:
            deliveries.complete_delivery(session, Task.LAUNCH, run_id, 1)
    assert verbs(first) == ["INSERT"]
    assert verbs(done) == ["INSERT"]
