"""Random sequences of API calls and worker moves never break the lifecycle's promises.

A hypothesis state machine drives one fresh organisation through the HTTP API (create, cancel,
patch, delete) and, as the workers would, through `transition()` directly. After every step it
checks, against a plain model of what should be true:
- terminal statuses are absorbing (no API call or worker move leaves one);
- each status change wrote exactly one status RunEvent, in order;
- each change got a resource_version above every version seen before (strictly increasing and
  globally unique);
- no run is lost: every live run is returned by GET and by the paged list, with its status;
- the change feed from 0 returns every run, and read incrementally it never skips a change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app_state import app_sessionmaker
from core.db import session_scope
from core.errors import IllegalTransition
from core.models import Run, RunEvent
from core.runs.states import TRANSITIONS, RunStatus, StatusReason, transition
from tests.factories import app_of, make_tenant, run_spec

PAGE = 4  # small pages, so a handful of runs already spans several of them
PRIORITIES = st.sampled_from(["low", "normal", "high"])
REASON_FOR = {
    RunStatus.PENDING: StatusReason.SUBMITTED,
    RunStatus.QUEUED: StatusReason.QUEUED_FOR_CAPACITY,
    RunStatus.STARTING: StatusReason.LAUNCHING,
    RunStatus.RUNNING: StatusReason.RUNNING,
    RunStatus.STOPPING: StatusReason.MAX_DURATION_EXCEEDED,
    RunStatus.SUCCEEDED: StatusReason.COMPLETED,
    RunStatus.FAILED: StatusReason.EXIT_CODE_NONZERO,
    RunStatus.CANCELLED: StatusReason.USER_CANCELLED,
}
# The workers' usual path; a running run then succeeds, fails or is stopped (one of ENDINGS).
HAPPY_PATH = {
    RunStatus.PENDING: RunStatus.QUEUED,
    RunStatus.QUEUED: RunStatus.STARTING,
    RunStatus.STARTING: RunStatus.RUNNING,
    RunStatus.STOPPING: RunStatus.CANCELLED,
}
ENDINGS = st.sampled_from([RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.STOPPING])
CANCEL_TARGET = {
    RunStatus.PENDING: RunStatus.CANCELLED,
    RunStatus.QUEUED: RunStatus.CANCELLED,
    RunStatus.STARTING: RunStatus.STOPPING,
    RunStatus.RUNNING: RunStatus.STOPPING,
}


@dataclass
class RunModel:
    """What the test believes about one run."""

    status: RunStatus
    version: int
    attempt: int = 0
    deleted: bool = False
    moves: list[tuple[str | None, str | None]] = field(default_factory=list)


class LifecycleMachine(RuleBasedStateMachine):
    runs = Bundle("runs")  # created and not deleted

    def __init__(self, client: TestClient) -> None:
        super().__init__()
        self.client = client
        self.sessions = app_sessionmaker(app_of(client))
        self.tenant = make_tenant(client)
        self.model: dict[str, RunModel] = {}
        self.highest_version = 0
        self.feed_cursor = 0

    # -- API actions ---------------------------------------------------------------------------

    @rule(target=runs, priority=PRIORITIES)
    def create_run(self, priority: str) -> str:
        body = self._call("POST", "/v1/runs", 201, json=run_spec(scheduling={"priority": priority}))
        self.model[body["id"]] = RunModel(RunStatus.PENDING, 0)
        self._changed(body["id"], body["resource_version"])
        self._check_run(body["id"], body)
        return str(body["id"])

    @rule(run_id=runs)
    def cancel_run(self, run_id: str) -> None:
        """pending/queued → cancelled, starting/running → stopping, repeats are no-ops."""
        status, path = self.model[run_id].status, f"/v1/runs/{run_id}/cancel"
        if status in CANCEL_TARGET:
            body = self._call("POST", path, 200)
            self._moved(run_id, CANCEL_TARGET[status], body["resource_version"])
            self._check_run(run_id, body)
        elif status in {RunStatus.STOPPING, RunStatus.CANCELLED}:
            self._check_run(run_id, self._call("POST", path, 200))
        else:
            self._call("POST", path, 409)

    @rule(run_id=runs, priority=PRIORITIES)
    def patch_run(self, run_id: str, priority: str) -> None:
        path, patch = f"/v1/runs/{run_id}", {"priority": priority}
        if self.model[run_id].status.is_terminal:
            self._call("PATCH", path, 409, json=patch)
            return
        body = self._call("PATCH", path, 200, json=patch)
        self._changed(run_id, body["resource_version"])
        self._check_run(run_id, body)
        assert body["priority"] == priority

    @rule(target=runs, run_id=consumes(runs))
    def delete_run(self, run_id: str) -> Any:
        """Only finished runs may go; a deleted run leaves the bundle of live runs."""
        known = self.model[run_id]
        if not known.status.is_terminal:
            self._call("DELETE", f"/v1/runs/{run_id}", 409)
            return run_id
        self._call("DELETE", f"/v1/runs/{run_id}", 204)
        known.deleted = True
        with session_scope(self.sessions) as session:
            version = session.scalar(select(Run.resource_version).where(Run.id == run_id))
        self._changed(run_id, int(version or 0))
        return multiple()

    @precondition(lambda self: any(m.deleted for m in self.model.values()))
    @rule(data=st.data())
    def deleted_run_is_gone(self, data: st.DataObject) -> None:
        gone = data.draw(st.sampled_from(sorted(i for i, m in self.model.items() if m.deleted)))
        self._call("GET", f"/v1/runs/{gone}", 404)
        self._call("POST", f"/v1/runs/{gone}/cancel", 404)
        self._call("DELETE", f"/v1/runs/{gone}", 404)

    # -- worker actions: moves straight through the lifecycle module, as the workers make them --

    @rule(run_id=runs, hops=st.integers(min_value=1, max_value=5), ending=ENDINGS)
    def worker_advances_run(self, run_id: str, hops: int, ending: RunStatus) -> None:
        """Queue, start the next attempt, see it running, end or stop it; confirm a stop."""
        for _ in range(hops):
            status = self.model[run_id].status
            if status.is_terminal:
                break
            self._worker_move(run_id, ending if status is RunStatus.RUNNING else HAPPY_PATH[status])
        self._check_run(run_id, self._call("GET", f"/v1/runs/{run_id}", 200))

    @rule(run_id=runs, data=st.data())
    def worker_makes_any_legal_move(self, run_id: str, data: st.DataObject) -> None:
        targets = sorted(TRANSITIONS[self.model[run_id].status])
        if targets:  # a terminal run has none: worker_illegal_move_is_refused covers it
            self._worker_move(run_id, data.draw(st.sampled_from(targets), label="to"))
        self._check_run(run_id, self._call("GET", f"/v1/runs/{run_id}", 200))

    @rule(run_id=runs, to=st.sampled_from(sorted(RunStatus)))
    def worker_illegal_move_is_refused(self, run_id: str, to: RunStatus) -> None:
        current = self.model[run_id].status
        if to in TRANSITIONS[current]:
            return  # legal: the rules above make those
        try:
            with session_scope(self.sessions) as session:
                transition(session, self._load(session, run_id), to, REASON_FOR[to])
        except IllegalTransition:
            return
        raise AssertionError(f"{current} -> {to} was allowed")

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def paged_list_returns_every_live_run_once(self) -> None:
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": PAGE}
        while True:
            page = self._call("GET", "/v1/runs", 200, params=params)
            seen += page["data"]
            if not page["has_more"]:
                break
            params["after"] = page["next_cursor"]
        live = sorted((i for i, m in self.model.items() if not m.deleted), reverse=True)
        assert [r["id"] for r in seen] == live
        for body in seen:
            self._check_run(body["id"], body)

    @invariant()
    def change_feed_from_zero_returns_every_run_at_its_latest_version(self) -> None:
        changed, _ = self._feed(0)
        reported = {i: (r["resource_version"], r["deleted"]) for i, r in changed.items()}
        assert reported == {i: (m.version, m.deleted) for i, m in self.model.items()}

    @invariant()
    def change_feed_read_incrementally_skips_nothing(self) -> None:
        since = self.feed_cursor
        changed, self.feed_cursor = self._feed(since)
        expected = {i: m.version for i, m in self.model.items() if m.version > since}
        assert {i: r["resource_version"] for i, r in changed.items()} == expected
        assert self.feed_cursor >= self.highest_version

    @invariant()
    def one_status_event_per_transition(self) -> None:
        with session_scope(self.sessions) as session:
            events = session.execute(
                select(RunEvent.run_id, RunEvent.from_status, RunEvent.to_status)
                .where(RunEvent.org_id == self.tenant.org_id, RunEvent.kind == "status")
                .order_by(RunEvent.id)
            ).all()
        recorded: dict[str, list[tuple[str | None, str | None]]] = {i: [] for i in self.model}
        for run_id, before, after in events:
            recorded[run_id].append((before, after))
        assert recorded == {run_id: m.moves for run_id, m in self.model.items()}

    def teardown(self) -> None:
        """No run is lost: every live run still answers GET, with what the model expects."""
        for run_id in (i for i, m in self.model.items() if not m.deleted):
            self._check_run(run_id, self._call("GET", f"/v1/runs/{run_id}", 200))

    # -- bookkeeping ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, expected: int, **kwargs: Any) -> Any:
        response = self.client.request(method, path, headers=self.tenant.headers, **kwargs)
        assert response.status_code == expected, (method, path, response.text)
        return response.json() if response.content else None

    def _load(self, session: Session, run_id: str) -> Run:
        return session.scalars(select(Run).where(Run.id == run_id)).one()

    def _worker_move(self, run_id: str, to: RunStatus) -> None:
        starting = to is RunStatus.STARTING
        with session_scope(self.sessions) as session:
            run = transition(
                session, self._load(session, run_id), to, REASON_FOR[to], next_attempt=starting
            )
            version = run.resource_version
        self.model[run_id].attempt += starting
        self._moved(run_id, to, version)

    def _changed(self, run_id: str, version: int) -> None:
        """A change happened: its version must beat every version handed out before."""
        assert version > self.highest_version, (run_id, version, self.highest_version)
        self.highest_version = self.model[run_id].version = version

    def _moved(self, run_id: str, to: RunStatus, version: int) -> None:
        known = self.model[run_id]
        assert not known.status.is_terminal, f"{run_id} left terminal status {known.status}"
        known.moves.append((known.status.value, to.value))
        known.status = to
        self._changed(run_id, version)

    def _check_run(self, run_id: str, body: dict[str, Any]) -> None:
        known = self.model[run_id]
        seen = (body["id"], body["status"], body["attempt"], body["resource_version"])
        assert seen == (run_id, known.status, known.attempt, known.version)

    def _feed(self, since: int) -> tuple[dict[str, dict[str, Any]], int]:
        """Every run the change feed reports after `since` (all pages), and where to go on."""
        found: dict[str, dict[str, Any]] = {}
        version = since
        while True:
            params = {"changed_since": version, "limit": PAGE}
            page = self._call("GET", "/v1/runs", 200, params=params)
            found.update({r["id"]: r for r in page["data"]})
            assert page["resource_version"] >= version
            version = page["resource_version"]
            if not page["has_more"]:
                return found, version


def test_random_api_and_worker_sequences_keep_the_lifecycle_invariants(
    client: TestClient,
) -> None:
    class OnThisClient(LifecycleMachine):
        def __init__(self) -> None:
            super().__init__(client)

    run_state_machine_as_test(
        OnThisClient,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
