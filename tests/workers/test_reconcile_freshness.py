"""A reconcile pass acts only on evidence newer than what it judges (issue 13, finding 1).

A pass observes the executor, then loads the runs. Another worker can launch a run and move it
`starting → running` in between: the older observation does not show the attempt, yet the run
it loads is `running`. These tests make that interleaving happen every time, with no sleeps:
`StaleExecutor` is a real executor (the local one) whose `observe()` takes its snapshot, then
lets "another worker" (the real `launch_attempt` and a real reconcile pass, on their own
sessions) act and commit, and only then returns the snapshot it took before.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from core import db
from core.executor_kinds import ExecutorKind
from core.launch_request import LaunchRequest
from core.logs import LogStore
from core.models import Run, RunAttempt, TaskDelivery
from core.outbox import Task
from core.runs import service
from core.runs.attempts import mark_started
from core.runs.spec import RunCreate
from core.runs.states import RunStatus, StatusReason, transition
from core.settings import Settings
from core.tenants.schemas import Principal, Role
from core.tenants.service import bootstrap
from workers import scheduler
from workers.executors.base import AttemptObservation, Executor, RankPhase
from workers.executors.local import LocalExecutor
from workers.reconciler import WorkerContext, launch_attempt, reconcile_once

MOVE_TIMEOUT_S = 10.0
# Notes its attempt, then lives until its gate file appears (bounded: a minute at most).
SCRIPT = """echo "$TRAINPORT_RUN_ID $TRAINPORT_ATTEMPT" >> "$MARKER"
i=0
while [ ! -e "$GATE-$TRAINPORT_ATTEMPT" ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done
exit "$(cat "$GATE-$TRAINPORT_ATTEMPT")"
"""


@dataclass
class StaleExecutor:
    """The local executor, whose observe() returns a snapshot older than what `meanwhile`
    (another worker acting between this pass's observe and its load) commits."""

    inner: LocalExecutor
    meanwhile: list[Callable[[], object]] = field(default_factory=list)  # results are ignored
    kind: ExecutorKind = ExecutorKind.LOCAL

    def launch(self, request: LaunchRequest) -> None:
        self.inner.launch(request)

    def cancel(self, run_id: str, attempt: int, grace_seconds: float | None = None) -> bool:
        return self.inner.cancel(run_id, attempt)

    def observe(self) -> list[AttemptObservation]:
        snapshot = self.inner.observe()
        while self.meanwhile:
            self.meanwhile.pop(0)()
        return snapshot

    def leftovers(self, run_id: str, attempt: int) -> None:
        return None

    def cleanup(self, run_id: str, attempt: int) -> None:
        self.inner.cleanup(run_id, attempt)


@dataclass
class World:
    factory: sessionmaker[Session]
    settings: Settings
    executor: LocalExecutor
    stale: StaleExecutor
    marker: Path
    gate: Path

    def ctx(self, executor: Executor) -> WorkerContext:
        return WorkerContext(self.factory, self.settings, lambda where: executor)

    def submit(self, max_retries: int = 1) -> str:
        """A run admitted (`starting`, attempt 1) whose launch nobody has delivered yet."""
        body = RunCreate(
            command=["sh", "-c", SCRIPT],
            env={"MARKER": str(self.marker), "GATE": str(self.gate)},
            scheduling={"max_retries": max_retries},
        )
        with db.session_scope(self.factory) as session:
            made = bootstrap(session, f"org-{secrets.token_hex(4)}")
            caller = Principal(made.org.id, made.key.id, Role.ADMIN)
            run_id = service.create_run(session, caller, body).run.id
        scheduler.run_pass(self.factory, self.settings)
        assert self.run(run_id) == (RunStatus.STARTING, 1)
        return run_id

    def run(self, run_id: str) -> tuple[RunStatus, int]:
        with db.session_scope(self.factory) as session:
            row = session.get(Run, run_id)
            assert row is not None
            return RunStatus(row.status), row.attempt

    def attempts(self, run_id: str) -> list[tuple[int, str | None]]:
        with db.session_scope(self.factory) as session:
            rows = session.execute(
                select(RunAttempt.attempt, RunAttempt.outcome)
                .where(RunAttempt.run_id == run_id)
                .order_by(RunAttempt.attempt)
            ).all()
        return [(attempt, outcome) for attempt, outcome in rows]

    def launches(self, run_id: str) -> list[int]:
        with db.session_scope(self.factory) as session:
            return list(
                session.scalars(
                    select(TaskDelivery.attempt).where(
                        TaskDelivery.task == Task.LAUNCH.value, TaskDelivery.run_id == run_id
                    )
                )
            )

    def started(self) -> list[str]:
        return self.marker.read_text().splitlines() if self.marker.exists() else []

    def another_worker_launches_and_sees_it_running(self, run_id: str, attempt: int) -> None:
        """The real launch task, then a real reconcile pass once the rank runs: it commits
        `starting → running`."""
        assert launch_attempt(self.ctx(self.executor), run_id, attempt) == "launched"
        self.wait_for(run_id, attempt, RankPhase.RUNNING)
        reconcile_once(self.ctx(self.executor))
        assert self.run(run_id) == (RunStatus.RUNNING, attempt)

    def wait_for(self, run_id: str, attempt: int, phase: RankPhase) -> None:
        """Bounded poll: a real process starts (or exits) in its own time."""
        deadline = time.monotonic() + MOVE_TIMEOUT_S
        while time.monotonic() < deadline:
            seen = [
                o for o in self.executor.observe() if (o.run_id, o.attempt) == (run_id, attempt)
            ]
            if seen and all(rank.phase is phase for rank in seen[0].ranks):
                return
            time.sleep(0.02)
        raise AssertionError(f"{run_id}/{attempt} never reached {phase}")

    def finish(self, attempt: int, code: int) -> None:
        Path(f"{self.gate}-{attempt}").write_text(str(code))


@pytest.fixture
def world(factory: sessionmaker[Session], fresh_url: str, tmp_path: Path) -> Iterator[World]:
    settings = Settings(
        database_url=fresh_url,
        state_dir=tmp_path / "state",
        local_cpu_slots=2,
        launch_grace_seconds=0.5,
        system_retry_limit=2,
    )
    executor = LocalExecutor(settings.state_dir, LogStore(settings.log_root), "", 1.0)
    made = World(
        factory,
        settings,
        executor,
        StaleExecutor(executor),
        tmp_path / "started",
        tmp_path / "gate",
    )
    yield made
    for attempt in (1, 2, 3):
        made.finish(attempt, 0)
    for seen in executor.observe():  # never leave a process behind
        deadline = time.monotonic() + MOVE_TIMEOUT_S
        while not executor.cancel(seen.run_id, seen.attempt) and time.monotonic() < deadline:
            time.sleep(0.05)
        executor.cleanup(seen.run_id, seen.attempt)


def test_a_run_that_moved_to_running_after_the_observation_is_not_declared_lost(
    world: World,
) -> None:
    run_id = world.submit()
    world.stale.meanwhile.append(
        lambda: world.another_worker_launches_and_sees_it_running(run_id, 1)
    )

    reconcile_once(world.ctx(world.stale))  # observed nothing, then loaded a `running` run

    assert world.run(run_id) == (RunStatus.RUNNING, 1)
    assert world.attempts(run_id) == [(1, None)]  # attempt 1 still open, no node_lost
    assert world.launches(run_id) == [1]  # nothing re-launched
    reconcile_once(world.ctx(world.executor))  # the next pass, on a fresh observation
    assert world.run(run_id) == (RunStatus.RUNNING, 1)
    world.finish(1, 0)
    world.wait_for(run_id, 1, RankPhase.SUCCEEDED)
    reconcile_once(world.ctx(world.executor))
    assert world.run(run_id) == (RunStatus.SUCCEEDED, 1)
    assert world.started() == [f"{run_id} 1"]  # its command ran exactly once


def test_a_launch_completed_after_the_observation_is_not_declared_lost(world: World) -> None:
    run_id = world.submit()
    launch = world.ctx(world.executor)
    world.stale.meanwhile.append(lambda: launch_attempt(launch, run_id, 1))

    reconcile_once(world.ctx(world.stale))  # observed nothing, then loaded a launched run

    assert world.run(run_id) == (RunStatus.STARTING, 1)
    assert world.attempts(run_id) == [(1, None)]
    world.wait_for(run_id, 1, RankPhase.RUNNING)
    reconcile_once(world.ctx(world.executor))
    assert world.run(run_id) == (RunStatus.RUNNING, 1)
    assert world.started() == [f"{run_id} 1"]


def test_a_running_run_the_executor_truly_lost_is_still_declared_lost(world: World) -> None:
    """Freshness delays nothing real: lost processes are found on the next observation."""
    run_id = world.submit(max_retries=0)
    world.another_worker_launches_and_sees_it_running(run_id, 1)
    world.finish(1, 0)
    world.wait_for(run_id, 1, RankPhase.SUCCEEDED)
    world.executor.cleanup(run_id, 1)  # its node is gone: nothing of attempt 1 remains

    reconcile_once(world.ctx(world.executor))

    assert world.attempts(run_id) == [(1, "system_failed")]
    assert world.run(run_id) == (RunStatus.QUEUED, 1)  # the system retry: queued again


def test_a_starting_run_nobody_launched_is_still_relaunched_after_the_grace(
    world: World,
) -> None:
    run_id = world.submit()
    with db.session_scope(world.factory) as session:  # its launch message was lost long ago
        row = session.get(Run, run_id)
        assert row is not None
        row.updated_at = row.updated_at.replace(year=row.updated_at.year - 1)

    reconcile_once(world.ctx(world.executor))

    assert world.run(run_id) == (RunStatus.STARTING, 1)
    with db.session_scope(world.factory) as session:
        redriven = session.scalar(
            select(TaskDelivery.updated_at).where(
                TaskDelivery.task == Task.LAUNCH.value, TaskDelivery.run_id == run_id
            )
        )
    assert redriven is not None  # the launch was published again (note_redrive)


def test_an_observed_exit_settled_meanwhile_touches_nothing_newer(world: World) -> None:
    """The reverse race: the observation shows attempt 1 exit 3; before this pass loads the
    runs another worker settles it (a retry), launches attempt 2 and sees it running."""
    run_id = world.submit(max_retries=1)
    world.another_worker_launches_and_sees_it_running(run_id, 1)
    world.finish(1, 3)
    world.wait_for(run_id, 1, RankPhase.FAILED)

    def another_worker_retries() -> None:
        assert reconcile_once(world.ctx(world.executor)).settled  # attempt 1 failed: retry
        scheduler.run_pass(world.factory, world.settings)  # what the reconcile task does next
        assert world.run(run_id) == (RunStatus.STARTING, 2)
        world.another_worker_launches_and_sees_it_running(run_id, 2)

    world.stale.meanwhile.append(another_worker_retries)
    reconcile_once(world.ctx(world.stale))

    assert world.run(run_id) == (RunStatus.RUNNING, 2)
    assert world.attempts(run_id) == [(1, "failed"), (2, None)]
    assert world.started() == [f"{run_id} 1", f"{run_id} 2"]


def test_an_exit_seen_while_another_worker_marks_the_run_running_is_settled_not_erased(
    world: World,
) -> None:
    """The pass observes attempt 1 finished and loads its run `starting`; before it applies
    the ending, another worker (holding the run's row lock) moves it to `running` on its own
    older observation. The ending still holds: the attempt finished whatever the run's status.
    Erasing the attempt's files without settling it made the next pass declare it lost."""
    run_id = world.submit()
    assert launch_attempt(world.ctx(world.executor), run_id, 1) == "launched"
    world.finish(1, 0)
    world.wait_for(run_id, 1, RankPhase.SUCCEEDED)
    locked, done = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def another_worker_marks_it_running() -> None:
        try:
            with db.session_scope(world.factory) as session:
                row = session.get(Run, run_id, with_for_update=True)
                assert row is not None
                locked.set()
                wait_until_a_session_waits_for_a_lock(world.factory)  # the pass's apply
                transition(session, row, RunStatus.RUNNING, StatusReason.RUNNING, "ranks running")
                mark_started(session, run_id, 1)
        except BaseException as error:  # reported by the test thread below
            failures.append(error)
        finally:
            locked.set()
            done.set()

    thread = threading.Thread(target=another_worker_marks_it_running)

    def start_it() -> None:
        thread.start()
        assert locked.wait(MOVE_TIMEOUT_S)

    world.stale.meanwhile.append(start_it)
    reconcile_once(world.ctx(world.stale))
    assert done.wait(MOVE_TIMEOUT_S)
    thread.join()
    assert not failures, failures

    reconcile_once(world.ctx(world.executor))  # the next pass, whatever the first one did

    assert world.run(run_id) == (RunStatus.SUCCEEDED, 1)
    assert world.attempts(run_id) == [(1, "succeeded")]
    assert world.started() == [f"{run_id} 1"]


def wait_until_a_session_waits_for_a_lock(factory: sessionmaker[Session]) -> None:
    """Bounded poll of pg_stat_activity: nothing else says that a backend is now blocked."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + MOVE_TIMEOUT_S
    while time.monotonic() < deadline:
        with db.session_scope(factory) as session:
            if session.scalar(query):
                return
        time.sleep(0.01)
    raise AssertionError("the reconcile pass never waited for the run's row lock")


def test_a_pass_out_of_time_stops_between_runs_and_the_next_goes_on_where_it_stopped(
    world: World,
) -> None:
    """A catch-up pass (thousands of runs seen running at once) outlasted the reconcile task's
    60 s limit (issue 17's scale bench): a pass past its deadline now stops between two runs'
    steps, each committed on its own, and the next pass starts at the run it did not reach."""
    first, second = sorted([world.submit(), world.submit()])
    for run_id in (first, second):
        assert launch_attempt(world.ctx(world.executor), run_id, 1) == "launched"
        world.wait_for(run_id, 1, RankPhase.RUNNING)
    ctx = world.ctx(world.executor)  # one worker's passes, one after the other

    cut = reconcile_once(ctx, deadline=time.monotonic())  # out of time after its first run
    assert (cut.deferred, world.run(first), world.run(second)) == (
        1, (RunStatus.RUNNING, 1), (RunStatus.STARTING, 1),
    )  # fmt: skip
    cut = reconcile_once(ctx, deadline=time.monotonic())  # starts at the one it did not reach
    assert (cut.deferred, world.run(second)) == (1, (RunStatus.RUNNING, 1))
    whole = reconcile_once(ctx, deadline=time.monotonic() + 60)
    assert whole.deferred == 0
    assert ctx.cursor.resume_at == ""  # a pass that got through starts from the top again
    assert [world.run(run_id) for run_id in (first, second)] == [(RunStatus.RUNNING, 1)] * 2
