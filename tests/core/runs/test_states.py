"""The lifecycle table, enforced by `transition()` against PostgreSQL.

Every legal edge moves the run, stamps it, bumps its resource_version and writes one RunEvent;
every other pair raises and writes nothing; and when two writers race, exactly one wins.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app_state import app_sessionmaker
from core.db import session_scope
from core.errors import IllegalTransition
from core.models import Run, RunEvent
from core.runs.states import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    RunStatus,
    StatusReason,
    TransitionLost,
    transition,
)
from tests.factories import Tenant, app_of, create_run, make_tenant

LEGAL = sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets)
ILLEGAL = sorted((a, b) for a in RunStatus for b in RunStatus if b not in TRANSITIONS[a])
STAMPS = ("queued_at", "started_at", "finished_at")


def _path_to(target: RunStatus) -> list[RunStatus]:
    """The shortest chain of legal moves from `pending` to `target` (breadth-first)."""
    previous: dict[RunStatus, RunStatus | None] = {RunStatus.PENDING: None}
    todo = deque([RunStatus.PENDING])
    while todo:
        status = todo.popleft()
        for nxt in sorted(TRANSITIONS[status]):
            if nxt not in previous:
                previous[nxt] = status
                todo.append(nxt)
    path: list[RunStatus] = []
    step: RunStatus | None = target
    while step is not None and step is not RunStatus.PENDING:
        path.append(step)
        step = previous[step]
    return path[::-1]


@pytest.fixture
def sessions(client: TestClient) -> sessionmaker[Session]:
    return app_sessionmaker(app_of(client))


@pytest.fixture
def run_in(
    client: TestClient, tenant: Tenant, sessions: sessionmaker[Session]
) -> Callable[[RunStatus], str]:
    """Makes a run through the API and walks it, by legal moves, to the asked status."""

    def make(status: RunStatus) -> str:
        return _walk(sessions, create_run(client, tenant)["id"], status)

    return make


def _walk(sessions: sessionmaker[Session], run_id: str, status: RunStatus) -> str:
    for step in _path_to(status):
        with session_scope(sessions) as session:
            transition(session, _load(session, run_id), step, StatusReason.SYSTEM_ERROR)
    return run_id


def _stamp_set_by(to: RunStatus) -> str | None:
    if to.is_terminal:
        return "finished_at"
    return {RunStatus.QUEUED: "queued_at", RunStatus.RUNNING: "started_at"}.get(to)


def _load(session: Session, run_id: str) -> Run:
    return session.scalars(select(Run).where(Run.id == run_id)).one()


def _events(session: Session, run_id: str) -> list[RunEvent]:
    query = select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id)
    return list(session.scalars(query))


def _snapshot(sessions: sessionmaker[Session], run_id: str) -> tuple[object, ...]:
    with session_scope(sessions) as session:
        run = _load(session, run_id)
        count = session.scalar(select(func.count()).where(RunEvent.run_id == run_id))
        return (run.status, run.status_reason, run.resource_version, run.updated_at, count)


def test_the_lifecycle_table_covers_every_status_and_reaches_them_all_from_pending() -> None:
    assert set(TRANSITIONS) == set(RunStatus)
    assert all(_path_to(s) or s is RunStatus.PENDING for s in RunStatus)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_terminal_statuses_have_no_exits(terminal: RunStatus) -> None:
    assert TRANSITIONS[terminal] == frozenset()
    assert terminal.is_terminal


@pytest.mark.parametrize(("current", "to"), LEGAL, ids=[f"{a}->{b}" for a, b in LEGAL])
def test_legal_transition_moves_the_run_and_writes_one_event(
    current: RunStatus,
    to: RunStatus,
    run_in: Callable[[RunStatus], str],
    sessions: sessionmaker[Session],
) -> None:
    run_id = run_in(current)
    with session_scope(sessions) as session:
        before = _load(session, run_id)
        old_version, old_stamps = before.resource_version, {s: getattr(before, s) for s in STAMPS}
        events_before = len(_events(session, run_id))
        transition(session, before, to, StatusReason.COMPLETED, "why it moved", actor="key_x")

    with session_scope(sessions) as session:
        run, events = _load(session, run_id), _events(session, run_id)
    assert (run.status, run.status_reason, run.status_message) == (to, "completed", "why it moved")
    assert run.resource_version > old_version
    assert len(events) == events_before + 1
    event = events[-1]
    assert (event.kind, event.from_status, event.to_status) == ("status", current, to)
    assert (event.resource_version, event.reason, event.actor) == (
        run.resource_version,
        "completed",
        "key_x",
    )
    stamped = _stamp_set_by(to)
    for name in STAMPS:
        expected = event.created_at if name == stamped else old_stamps[name]
        assert getattr(run, name) == expected, name


def test_next_attempt_counts_a_new_attempt_on_the_way_to_starting(
    run_in: Callable[[RunStatus], str], sessions: sessionmaker[Session]
) -> None:
    run_id = run_in(RunStatus.QUEUED)
    with session_scope(sessions) as session:
        run = _load(session, run_id)
        attempt = run.attempt
        transition(session, run, RunStatus.STARTING, StatusReason.LAUNCHING, next_attempt=True)

    with session_scope(sessions) as session:
        assert _load(session, run_id).attempt == attempt + 1


@pytest.fixture(scope="module")
def parked_runs(client: TestClient) -> dict[RunStatus, str]:
    """One run resting in each status; illegal moves leave them untouched, so they are shared."""
    owner = make_tenant(client)
    factory = app_sessionmaker(app_of(client))
    return {s: _walk(factory, create_run(client, owner)["id"], s) for s in RunStatus}


@pytest.mark.parametrize(("current", "to"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_illegal_transition_raises_and_changes_nothing(
    current: RunStatus,
    to: RunStatus,
    parked_runs: dict[RunStatus, str],
    sessions: sessionmaker[Session],
) -> None:
    run_id = parked_runs[current]
    before = _snapshot(sessions, run_id)

    with pytest.raises(IllegalTransition), session_scope(sessions) as session:
        transition(session, _load(session, run_id), to, StatusReason.SYSTEM_ERROR)

    assert _snapshot(sessions, run_id) == before


def test_a_lost_race_raises_transition_lost_and_writes_nothing(
    run_in: Callable[[RunStatus], str], sessions: sessionmaker[Session]
) -> None:
    run_id = run_in(RunStatus.PENDING)
    winner, loser = sessions(), sessions()
    try:
        winner_run, loser_run = _load(winner, run_id), _load(loser, run_id)
        transition(winner, winner_run, RunStatus.QUEUED, StatusReason.QUEUED_FOR_CAPACITY)
        winner.commit()
        after_winner = _snapshot(sessions, run_id)

        with pytest.raises(TransitionLost):
            transition(loser, loser_run, RunStatus.CANCELLED, StatusReason.USER_CANCELLED)
        loser.rollback()
    finally:
        winner.close()
        loser.close()

    assert _snapshot(sessions, run_id) == after_winner
    with session_scope(sessions) as session:
        assert [e.to_status for e in _events(session, run_id)][-1] == "queued"


def test_two_concurrent_writers_exactly_one_wins(
    run_in: Callable[[RunStatus], str], sessions: sessionmaker[Session]
) -> None:
    run_id = run_in(RunStatus.RUNNING)
    both_loaded = threading.Barrier(2, timeout=10)
    outcomes: dict[RunStatus, str] = {}

    def writer(to: RunStatus) -> None:
        try:
            with session_scope(sessions) as session:
                run = _load(session, run_id)
                both_loaded.wait()
                transition(session, run, to, StatusReason.COMPLETED)
            outcomes[to] = "won"
        except TransitionLost:
            outcomes[to] = "lost"

    threads = [
        threading.Thread(target=writer, args=(s,)) for s in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert sorted(outcomes.values()) == ["lost", "won"]
    winner = next(s for s, outcome in outcomes.items() if outcome == "won")
    with session_scope(sessions) as session:
        assert _load(session, run_id).status == winner
        finished = [e for e in _events(session, run_id) if e.from_status == "running"]
    assert [e.to_status for e in finished] == [winner]
