"""Random submit / cancel / crash / redelivery / exit sequences keep the workers' promises.

A hypothesis state machine drives the real code paths in this process, on a fresh PostgreSQL
database and state folder per example: the run service (create, cancel), the outbox relay
(`relay.drain`), the task bodies (a scheduler pass, `launch_attempt`, `stop_run`), the
reconciler pass and the local executor, which starts real processes. The broker is a list the
relay publishes into; the machine delivers its messages in any order, delivers some again
(at-least-once), and makes workers die half-way through a launch (the delivery counted, maybe
the processes started, nothing recorded) so the message comes back. It also restarts the
worker (a new executor instance that re-adopts from files), kills a run's processes as a lost
node would, and lets commands exit, with 0 or 3.

After every step it checks:
- only legal transitions: each run's status events chain from `pending`, every pair in
  TRANSITIONS, ending at the run's status;
- at most one live launch per (run, attempt): no rank's command ever started twice, live
  commands belong only to active runs' current attempts, one process per rank;
- the quota ledger equals the admitted runs: the open attempts are exactly the active runs'
  current ones with the GPUs and CPU slots their specs need, the quota route reports their
  sum, and no quota or cluster limit is exceeded.
At the end of each example every run is cancelled and the workers catch up: all runs end,
cancelled ones `cancelled`, with no process left and an empty ledger.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core import db, deliveries
from core.errors import Conflict
from core.logs import LogStore
from core.models import Run, RunAttempt, RunEvent, TaskDelivery
from core.outbox import Task
from core.runs import service
from core.runs.spec import RunCreate
from core.runs.states import TRANSITIONS, RunStatus
from core.scheduling import quotas
from core.scheduling.planner import Needs
from core.scheduling.schemas import QuotaIn
from core.settings import Settings
from core.tenants.schemas import Principal, Role
from core.tenants.service import bootstrap
from workers import relay, scheduler
from workers.executors.base import RankPhase
from workers.executors.local import LocalExecutor
from workers.executors.local_attempt import signal_session
from workers.reconciler import WorkerContext, launch_attempt, reconcile_once, stop_run

CPU_SLOTS, CLUSTER_GPUS = 2, {"a100": 3}
QUOTA = QuotaIn(max_gpus=2, max_running_runs=3)
ACTIVE = {RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING}
SHAPES = {  # compute blocks: 1 or 2 ranks, on CPU slots or GPUs
    "cpu": {},
    "cpu-x2": {"processes": 2},
    "gpu": {"gpus_per_node": 1, "gpu_type": "a100"},
    "gpu-x2": {"gpus_per_node": 2, "gpu_type": "a100"},
}
TOKEN = "trainport-lifecycle-machine"  # finds this test's commands among all processes
# Each rank notes (run, attempt, rank, pid), then waits for its attempt's gate file, whose
# content is the exit code. Bounded: it gives up after a minute whatever happens.
SCRIPT = f""": {TOKEN}
echo "$TRAINPORT_RUN_ID $TRAINPORT_ATTEMPT $RANK $$" >> "$MARKER"
gate="$GATES/$TRAINPORT_RUN_ID-$TRAINPORT_ATTEMPT"
i=0
while [ ! -e "$gate" ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done
exit "$(cat "$gate" 2>/dev/null || echo 0)"
"""
SETTLE_TIMEOUT_S = 30.0
MOVE_TIMEOUT_S = 2.0
Key = tuple[str, int, int]  # run, attempt, rank


class Broker:
    """What the relay published: messages wait until the machine delivers them."""

    def __init__(self) -> None:
        self.waiting: list[tuple[str, dict[str, Any]]] = []
        self.delivered: list[tuple[str, dict[str, Any]]] = []

    def publish(self, task: str, payload: dict[str, Any]) -> None:
        self.waiting.append((task, payload))


class WorkersMachine(RuleBasedStateMachine):
    runs = Bundle("runs")

    def __init__(self, database_url: str, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.marker, self.gates = folder / "started", folder / "gates"
        self.gates.mkdir(parents=True)
        self.settings = Settings(
            database_url=database_url,
            state_dir=folder / "state",
            local_cpu_slots=CPU_SLOTS,
            local_gpus=CLUSTER_GPUS,
            launch_grace_seconds=0.5,  # a launch nobody delivered is re-driven soon
            cancel_grace_seconds=1.0,
            max_task_deliveries=4,
            system_retry_limit=2,
        )
        self.engine = db.build_engine(self.settings)
        self.factory: sessionmaker[Session] = db.make_sessionmaker(self.engine)
        self.executor = self._new_executor()
        self.broker = Broker()
        self.cancelled: set[str] = set()
        with db.session_scope(self.factory) as session:
            made = bootstrap(session, f"org-{secrets.token_hex(4)}")
            self.caller = Principal(made.org.id, made.key.id, Role.ADMIN)
            quotas.set_quota(session, self.caller, made.org.id, QUOTA)

    def _new_executor(self) -> LocalExecutor:
        state = self.settings.state_dir
        return LocalExecutor(state, LogStore(self.settings.log_root), "", 1.0)

    @property
    def ctx(self) -> WorkerContext:
        return WorkerContext(self.factory, self.settings, lambda where: self.executor)

    # -- the API ---------------------------------------------------------------------------------

    @initialize(
        target=runs, shapes=st.lists(st.sampled_from(sorted(SHAPES)), min_size=2, max_size=4)
    )
    def submit_a_few(self, shapes: list[str]) -> Any:
        return multiple(*(self.submit(shape, retries=0) for shape in shapes))

    @rule(target=runs, shape=st.sampled_from(sorted(SHAPES)), retries=st.integers(0, 1))
    def submit(self, shape: str, retries: int) -> str:
        body = RunCreate(
            command=["sh", "-c", SCRIPT],
            env={"MARKER": str(self.marker), "GATES": str(self.gates)},
            compute=SHAPES[shape],
            scheduling={"max_retries": retries},
        )
        with db.session_scope(self.factory) as session:
            return service.create_run(session, self.caller, body).run.id

    @rule(run_id=runs)
    def cancel(self, run_id: str) -> None:
        try:
            with db.session_scope(self.factory) as session:
                service.cancel_run(session, self.caller, run_id)
        except Conflict:
            assert self._status(run_id) in {RunStatus.SUCCEEDED, RunStatus.FAILED}
            return
        self.cancelled.add(run_id)

    # -- the broker and the workers ----------------------------------------------------------------

    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """The relay publishes what was committed; one waiting message reaches a worker."""
        relay.drain(self.factory, self.broker.publish)
        index = _pick(data, self.broker.waiting, "message")
        if index is not None:
            self._handle(*self.broker.waiting.pop(index))

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        """At least once: a message that was handled already arrives again."""
        index = _pick(data, self.broker.delivered, "again")
        if index is not None:
            self._handle(*self.broker.delivered[index])

    @rule()
    def workers_catch_up(self) -> None:
        """Everything published is handled in order, then the reconciler makes a pass."""
        relay.drain(self.factory, self.broker.publish)
        while self.broker.waiting:
            self._handle(*self.broker.waiting.pop(0))
        self._let_processes_move()
        self.reconcile()

    @rule()
    def reconcile(self) -> None:
        """The periodic task: a reconciler pass, then an admission pass if attempts ended."""
        if reconcile_once(self.ctx).settled:
            scheduler.run_pass(self.factory, self.settings)

    @rule()
    def beat_schedules(self) -> None:
        scheduler.run_pass(self.factory, self.settings)

    @rule(data=st.data(), processes_started=st.booleans())
    def worker_dies_during_launch(self, data: st.DataObject, processes_started: bool) -> None:
        """The delivery was counted (and maybe the processes started); nothing else was
        recorded. The unacknowledged message goes back to the broker."""
        active = self._in(ACTIVE)
        index = _pick(data, active, "run")
        if index is None:
            return
        run_id, attempt = active[index]
        with db.session_scope(self.factory) as session:
            counted = deliveries.record_delivery(session, Task.LAUNCH, run_id, attempt)
        if counted is not None and processes_started:
            launch_attempt(self.ctx, run_id, attempt)  # counts once more, launches, records
            with db.session_scope(self.factory) as session:
                session.execute(  # ...but that last commit is the one the crash prevented
                    update(TaskDelivery)
                    .where(TaskDelivery.run_id == run_id, TaskDelivery.attempt == attempt)
                    .values(completed_at=None)
                )
        self.broker.waiting.append((Task.LAUNCH.value, {"run_id": run_id, "attempt": attempt}))

    @rule()
    def worker_restarts(self) -> None:
        """A new worker process: a fresh executor that knows only what the files say."""
        self.executor = self._new_executor()

    # -- the processes ---------------------------------------------------------------------------

    @rule(data=st.data(), code=st.sampled_from([0, 0, 3]))
    def processes_exit(self, data: st.DataObject, code: int) -> None:
        active = self._in(ACTIVE)
        index = _pick(data, active, "run")
        if index is None:
            return
        run_id, attempt = active[index]
        gate = self.gates / f"{run_id}-{attempt}"
        temporary = gate.with_suffix(".tmp")
        temporary.write_text(str(code))
        temporary.replace(gate)  # the ranks read all of it or nothing

    @rule(data=st.data())
    def node_loses_processes(self, data: st.DataObject) -> None:
        """kill -9 a rank's shim and its command, as a vanished node or OOM killer would."""
        pids = sorted(self._live().values())
        index = _pick(data, pids, "pid")
        if index is not None:
            with contextlib.suppress(ProcessLookupError):  # it exited since we looked
                signal_session(os.getsid(pids[index]), signal.SIGKILL)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def only_legal_transitions(self) -> None:
        with db.session_scope(self.factory) as session:
            events = session.execute(
                select(RunEvent.run_id, RunEvent.from_status, RunEvent.to_status)
                .where(RunEvent.kind == "status")
                .order_by(RunEvent.id)
            ).all()
            statuses = {row[0]: row[1] for row in session.execute(select(Run.id, Run.status))}
        reached = dict.fromkeys(statuses, RunStatus.PENDING.value)
        for run_id, before, after in events:
            assert before == reached[run_id], (run_id, before, reached[run_id])
            assert after is not None  # a status event names the status it moved to
            assert RunStatus(after) in TRANSITIONS[RunStatus(before)], (run_id, before, after)
            reached[run_id] = after
        assert reached == statuses

    @invariant()
    def at_most_one_live_launch_per_attempt(self) -> None:
        started = Counter(self._started())
        assert all(count == 1 for count in started.values()), started
        active = dict(self._in(ACTIVE))
        live = self._live()
        for run_id, attempt, _ in live:
            assert active.get(run_id) == attempt, (run_id, attempt, self._status(run_id))

    @invariant()
    def quota_ledger_equals_the_admitted_runs(self) -> None:
        with db.session_scope(self.factory) as session:
            grants = {
                (a.run_id, a.attempt): (a.gpus, a.cpu_slots)
                for a in session.scalars(select(RunAttempt).where(RunAttempt.ended_at.is_(None)))
            }
            admitted = {}
            for run in session.scalars(select(Run).where(Run.status.in_(ACTIVE))):
                needs = Needs.of(run.spec)
                admitted[(run.id, run.attempt)] = (needs.gpus, needs.cpu_slots)
            usage = quotas.get_quota(session, self.caller, self.caller.org_id).usage
        assert grants == admitted
        gpus = sum(g for g, _ in grants.values())
        assert (usage.gpus, usage.running_runs) == (gpus, len(grants))
        assert gpus <= min(QUOTA.max_gpus or 0, CLUSTER_GPUS["a100"])
        assert len(grants) <= (QUOTA.max_running_runs or 0)
        assert sum(s for _, s in grants.values()) <= CPU_SLOTS

    def teardown(self) -> None:
        try:
            self._everything_cancelled_ends_cleanly()
        finally:
            for pid in self._live().values():
                signal_session(os.getsid(pid), signal.SIGKILL)
            for seen in self.executor.observe():
                self.executor.cleanup(seen.run_id, seen.attempt)
            self.engine.dispose()

    def _everything_cancelled_ends_cleanly(self) -> None:
        with db.session_scope(self.factory) as session:
            run_ids = list(session.scalars(select(Run.id)))
        for run_id in run_ids:
            self.cancel(run_id)
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while any(not self._status(r).is_terminal for r in run_ids):
            assert time.monotonic() < deadline, {r: self._status(r) for r in run_ids}
            self.workers_catch_up()
            time.sleep(0.05)  # bounded poll: processes end on their own time
        for run_id in self.cancelled:
            assert self._status(run_id) is RunStatus.CANCELLED, run_id
        assert self._live() == {}
        self.quota_ledger_equals_the_admitted_runs()
        self.only_legal_transitions()

    # -- helpers ---------------------------------------------------------------------------------

    def _handle(self, task: str, payload: dict[str, Any]) -> None:
        self.broker.delivered.append((task, payload))
        if task == Task.SCHEDULE.value:
            scheduler.run_pass(self.factory, self.settings, [payload["run_id"]])
        elif task == Task.LAUNCH.value:
            launch_attempt(self.ctx, payload["run_id"], payload["attempt"])
        elif task == Task.STOP.value:
            stop_run(self.ctx, payload["run_id"])
        else:
            raise AssertionError(f"unexpected task {task}")

    def _let_processes_move(self) -> None:
        """Bounded poll until launched ranks have started and gated ones have exited, so a
        pass that follows sees them move (it proves nothing: the invariants hold either way)."""
        deadline = time.monotonic() + MOVE_TIMEOUT_S
        while time.monotonic() < deadline:
            ranks = [rank for seen in self.executor.observe() for rank in seen.ranks]
            gated = [key for key in self._live() if (self.gates / f"{key[0]}-{key[1]}").exists()]
            if not gated and all(rank.phase is not RankPhase.PENDING for rank in ranks):
                return
            time.sleep(0.02)

    def _status(self, run_id: str) -> RunStatus:
        with db.session_scope(self.factory) as session:
            return RunStatus(session.scalars(select(Run.status).where(Run.id == run_id)).one())

    def _in(self, statuses: set[RunStatus]) -> list[tuple[str, int]]:
        with db.session_scope(self.factory) as session:
            rows = session.execute(
                select(Run.id, Run.attempt).where(Run.status.in_(statuses)).order_by(Run.id)
            )
            return [(run_id, attempt) for run_id, attempt in rows]

    def _started(self) -> list[Key]:
        if not self.marker.exists():
            return []
        lines = [line.split() for line in self.marker.read_text().splitlines()]
        return [(run_id, int(attempt), int(rank)) for run_id, attempt, rank, _ in lines]

    def _live(self) -> dict[Key, int]:
        """This example's commands that are alive now, by (run, attempt, rank): their pids."""
        found: dict[Key, int] = {}
        for pid, environ in _live_commands():
            if environ.get("MARKER") != str(self.marker):
                continue
            key = (
                environ["TRAINPORT_RUN_ID"],
                int(environ["TRAINPORT_ATTEMPT"]),
                int(environ["RANK"]),
            )
            assert key not in found, f"two live processes for {key}"
            found[key] = pid
        return found


def _pick(data: st.DataObject, items: Sequence[object], label: str) -> int | None:
    """An index into `items`, or None when it is empty. The draw never depends on what the
    database or the processes hold (both move with timing): Hypothesis replays an example by
    its draws, and a draw shaped by outside state made it FlakyStrategyDefinition."""
    choice = data.draw(st.integers(0, 2**16), label=label)
    return choice % len(items) if items else None


def _live_commands() -> Iterator[tuple[int, dict[str, str]]]:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if TOKEN.encode() not in Path(f"/proc/{entry}/cmdline").read_bytes():
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            raw = Path(f"/proc/{entry}/environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # it exited while we looked
        state, _, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if state in "ZX" or int(group) != int(entry):
            continue  # exited, or a fork of the command's shell (the command leads its group)
        pairs = (item.split("=", 1) for item in raw.decode(errors="replace").split("\0"))
        yield int(entry), dict(pair for pair in pairs if len(pair) == 2)


@pytest.mark.slow
def test_random_workers_histories_keep_transitions_launches_and_the_ledger_right(
    make_database: Callable[[], str], tmp_path: Path
) -> None:
    examples = iter(range(1000))

    class OnFreshDatabases(WorkersMachine):
        def __init__(self) -> None:
            super().__init__(make_database(), tmp_path / f"example-{next(examples)}")

    run_state_machine_as_test(
        OnFreshDatabases,
        settings=settings(
            max_examples=10,
            stateful_step_count=15,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
