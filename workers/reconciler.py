"""Drives runs toward what the executors see: launch, stop, observe, settle, re-drive.

Every step is load (short transaction) → act on the executor (no transaction open) → apply
(short transaction that locks the run row and re-checks its status and attempt, so a
duplicate delivery or a second reconciler changes nothing).

`reconcile_once` is the periodic pass (beat, every `reconcile_interval_seconds`):
- an attempt the executor reports running moves its `starting` run to `running`;
- a running attempt past a time limit of its run as it is now (`max_duration`, edited or not;
  `hang_timeout`: core/runs/time_limits.py) is stopped through its executor and settled with
  the limit's reason, on every executor alike;
- a finished attempt is settled (core/runs/attempts.settle: succeed, retry or fail) and its
  executor bookkeeping cleaned up; a `stopping` run is cancelled until nothing of it remains;
- a `starting` run the executor does not see after `launch_grace_seconds` gets its launch
  published again (deliveries are counted: past `max_task_deliveries` the run fails with
  `system_error`); one the executor saw launched and then lost, or a `running` run it no longer
  sees, is a system failure (retried when allowed) — judged only on an observation begun
  after the run's last change (`_changed_since`): another worker may launch a run and move it
  to `running` between this pass's observe and its load;
- an attempt the scheduler chose as a preemption victim is stopped (SIGTERM, then SIGKILL after
  `preemption_grace_seconds`) and its run requeued with reason `preempted`;
- a live attempt over a time limit (core/runs/time_limits.py: running time past
  `max_duration`, or still not started past `max_pending`) is stopped, then settled with that
  limit's reason;
- anything the executor runs that no active run claims (a cancelled run's late launch, an
  older attempt) is stopped and cleaned up, so no process is ever left behind.
Each run's step is isolated (`_isolated`): its exception is logged with the run's id and the
pass goes on, so one run's trouble never stalls the others.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import deliveries, outbox, process_logging, telemetry
from core.code.snapshots import ShippedCode
from core.db import read_sessions, session_scope
from core.executor_kinds import LOCAL_CLUSTER, ExecutorKind
from core.launch import freeze_and_mint_environment
from core.launch_request import CodeToRun, LaunchRequest
from core.models import Cluster, Run, RunAttempt, RunProgress, TaskDelivery, utcnow
from core.outbox import Task
from core.runs import repository
from core.runs.attempts import AttemptOutcome, Ending, close_attempt, mark_started, settle
from core.runs.repository import BARE
from core.runs.states import RunStatus, StatusReason, transition
from core.runs.time_limits import AttemptClock, over_limit
from core.secrets.service import LaunchSecretsMissing, resolve_for_launch
from core.settings import Settings
from workers.executors.base import (
    AttemptObservation,
    AttemptPhase,
    Executor,
    RankPhase,
    classify_attempt,
)
from workers.executors.registry import UnknownExecutor, Where
from workers.harvest import harvest
from workers.launch_code import CodeUnavailable, code_for_launch
from workers.log_metrics import tail_attempts
from workers.pod_leftovers import keep_uploaded
from workers.tensorboard_metrics import import_live

LOCAL = Where(
    LOCAL_CLUSTER, ExecutorKind.LOCAL
)  # runs admitted before clusters were recorded ran here
ACTIVE = (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING)
LIVE = (RunStatus.STARTING, RunStatus.RUNNING)  # what an attempt's own ending may settle
ENDED = frozenset({AttemptPhase.SUCCEEDED, AttemptPhase.FAILED, AttemptPhase.SYSTEM_FAILED})
log = logging.getLogger("trainport.reconciler")


@dataclass
class PassCursor:
    """Where the last pass was cut short: the next one starts at that run (by id), so a pass
    that never gets through every run still visits each in turn."""

    resume_at: str = ""


@dataclass(frozen=True)
class WorkerContext:
    factory: sessionmaker[Session]
    settings: Settings
    executors: Callable[[Where], Executor]  # by cluster (name and executor kind)
    # Attempts this process is stopping for a time limit, with the ending first judged: its
    # words (what a pending attempt waited for) are gone once its objects are.
    over_limit: dict[tuple[str, int], Ending] = field(default_factory=dict)
    cursor: PassCursor = field(default_factory=PassCursor)


@dataclass(frozen=True)
class ActiveRun:
    id: str
    status: RunStatus
    attempt: int
    updated_at: datetime
    where: Where
    scheduling: dict[str, Any]  # the spec's, as it is now (limits may have been changed)
    launched_at: datetime | None  # the attempt's launch completed
    running_since: datetime | None  # the run went `running`
    last_heartbeat_at: datetime | None  # this attempt's latest heartbeat
    preempted_by: str | None = None  # the scheduler chose this attempt as a preemption victim

    @property
    def clock(self) -> AttemptClock:
        return AttemptClock(
            self.status, self.attempt, self.launched_at, self.running_since, self.last_heartbeat_at
        )


@dataclass
class Summary:
    settled: int = 0  # attempts that ended: capacity came back, a pass may admit more
    orphans: int = 0
    deferred: int = 0  # active runs left to the next pass: this one ran out of time


# -- launch and stop (tasks) --------------------------------------------------------------------


def launch_attempt(ctx: WorkerContext, run_id: str, attempt: int) -> str:
    """Start (or adopt) attempt `attempt` of a `starting` run; what happened, in a word."""
    try:
        code = code_for_launch(ctx.factory, ctx.settings, run_id)  # git and storage: no txn
    except CodeUnavailable as missing:
        with session_scope(ctx.factory) as session:
            run = session.get(Run, run_id, with_for_update=True, options=BARE)
            if run is None or run.status != RunStatus.STARTING or run.attempt != attempt:
                return "moved on"
            _fail(session, run, f"launch refused: {missing}")
        return "refused"
    with session_scope(ctx.factory) as session:
        prepared = _prepare_launch(session, ctx.settings, run_id, attempt, code)
    if isinstance(prepared, str):
        return prepared
    request, where = prepared
    ctx.executors(where).launch(request)
    with session_scope(ctx.factory) as session:
        deliveries.complete_delivery(session, Task.LAUNCH, run_id, attempt)
        mark_started(session, run_id, attempt)
    return "launched"


def _prepare_launch(
    session: Session,
    settings: Settings,
    run_id: str,
    attempt: int,
    code: tuple[ShippedCode, CodeToRun] | None = None,
) -> tuple[LaunchRequest, Where] | str:
    run = session.get(Run, run_id, with_for_update=True, options=BARE)
    if run is None or run.status != RunStatus.STARTING or run.attempt != attempt:
        return "moved on"
    count = deliveries.record_delivery(session, Task.LAUNCH, run_id, attempt)
    if count is None:
        return "already launched"
    if count > settings.max_task_deliveries:
        message = (
            f"launching attempt {attempt} was delivered {count} times without finishing "
            "(its worker keeps dying); giving up"
        )
        _fail(session, run, message)
        return "gave up"
    try:
        secrets = resolve_for_launch(session, run, settings)  # the run's own org's, only
    except LaunchSecretsMissing as missing:
        _fail(session, run, f"launch refused: {missing}")
        return "refused"
    env = freeze_and_mint_environment(session, run, attempt, settings, code[0] if code else None)
    record = session.get(RunAttempt, (run_id, attempt))
    nodes = tuple(sorted((record.placement or {}) if record is not None else {}))
    request = LaunchRequest(
        run.id, run.org_id, attempt, dict(run.spec), env, run.project_id, secrets,
        code[1] if code else None, nodes,
    )  # fmt: skip
    return request, _where(session, run_id, attempt)


def _fail(session: Session, run: Run, message: str) -> None:
    ending = Ending(AttemptOutcome.SYSTEM_FAILED, StatusReason.SYSTEM_ERROR, message)
    close_attempt(session, run.id, run.attempt, ending)
    transition(session, run, RunStatus.FAILED, StatusReason.SYSTEM_ERROR, message)


def _where(session: Session, run_id: str, attempt: int) -> Where:
    row = session.execute(
        select(Cluster.name, Cluster.executor)
        .join(RunAttempt, RunAttempt.cluster == Cluster.name)
        .where(RunAttempt.run_id == run_id, RunAttempt.attempt == attempt)
    ).first()
    return Where(row[0], row[1]) if row else LOCAL


def stop_run(ctx: WorkerContext, run_id: str) -> bool:
    """Stop a `stopping` run's processes; cancel it once none is left. True when done."""
    with session_scope(ctx.factory) as session:
        run = session.get(Run, run_id, options=BARE)
        if run is None or run.status != RunStatus.STOPPING:
            return True
        attempt, where = run.attempt, _where(session, run_id, run.attempt)
    executor = ctx.executors(where)
    if attempt and not executor.cancel(run_id, attempt):
        return False  # still inside the grace period: the next pass asks again
    if attempt:
        _keep_leftovers(ctx, executor, run_id, attempt)
    ending = Ending(AttemptOutcome.CANCELLED, StatusReason.USER_CANCELLED, "stopped on request")
    _apply_ending(ctx, run_id, attempt, ending, {RunStatus.STOPPING})
    if attempt:
        executor.cleanup(run_id, attempt)
    return True


def _apply_ending(
    ctx: WorkerContext, run_id: str, attempt: int, ending: Ending, expected: set[RunStatus]
) -> bool:
    with session_scope(ctx.factory) as session:
        run = session.get(Run, run_id, with_for_update=True, options=BARE)
        if run is None or run.status not in expected or run.attempt != attempt:
            return False  # someone else settled it first
        settle(session, run, ending, ctx.settings.system_retry_limit)
        return True


# -- the periodic pass --------------------------------------------------------------------------


def reconcile_once(ctx: WorkerContext, deadline: float | None = None) -> Summary:
    """Compare what the executors see with the active runs, and act on each difference.

    Each run's step commits on its own, so a pass past `deadline` (a `time.monotonic()`) stops
    between runs and loses nothing: it has acted on at least one run, and the next pass starts
    where it stopped (`ctx.cursor`). Orphans go first: they hold capacity nobody accounts for.
    """
    observed_at = utcnow()
    observed = _observe(ctx)  # before loading runs: what it shows was admitted before it
    with session_scope(read_sessions(ctx.factory)) as session:
        active = _active_runs(session)
        metrics = repository.metrics_parts(session, {o.run_id for _, o in observed.values()})
    tail_attempts(  # before settling: an ended attempt's last lines count
        ctx.factory,
        [(o.run_id, o.attempt, _ended(o)) for _, o in observed.values()],
        metrics,
    )
    import_live(  # the same for TensorBoard event files in folders on this machine
        ctx.factory,
        [(executor, o.run_id, o.attempt, _ended(o)) for executor, o in observed.values()],
        metrics,
    )
    live = {(run.id, run.attempt) for run in active}
    summary = Summary()
    for (run_id, attempt), (executor, _) in observed.items():
        if (run_id, attempt) not in live:
            step = partial(_stop_orphan, executor, run_id, attempt)
            summary.orphans += int(_isolated("stopping orphaned", run_id, attempt, step))
    queue = _resuming(active, ctx.cursor.resume_at)
    for done, run in enumerate(queue):
        if done and deadline is not None and time.monotonic() > deadline:
            ctx.cursor.resume_at, summary.deferred = run.id, len(queue) - done
            log.info("reconcile pass out of time after %d of %d runs; the next goes on from %s",
                     done, len(queue), run.id)  # fmt: skip
            break
        seen = observed.get((run.id, run.attempt))
        step = partial(_reconcile_run, ctx, run, seen[1] if seen else None, observed_at)
        summary.settled += int(_isolated("reconciling", run.id, run.attempt, step))
    else:
        ctx.cursor.resume_at = ""
    for key in [key for key in ctx.over_limit if key not in live]:
        del ctx.over_limit[key]  # settled or cancelled elsewhere
    return summary


def _resuming(active: list[ActiveRun], resume_at: str) -> list[ActiveRun]:
    """The active runs by id, from `resume_at` round to the one before it."""
    ordered = sorted(active, key=lambda run: run.id)
    start = bisect_left([run.id for run in ordered], resume_at)
    return ordered[start:] + ordered[:start]


def _isolated(what: str, run_id: str, attempt: int, step: Callable[[], bool]) -> bool:
    """One run's step, whose failure (a corrupt row, a server's 500 for its objects) is logged
    with the run's id and stays its own: the pass goes on with the others, and the next pass
    tries this one again."""
    with process_logging.run_context(run_id, attempt):  # on every line the step logs
        try:
            return step()
        except Exception:
            telemetry.RECONCILE_RUN_ERRORS.labels(what.split()[0]).inc()
            log.exception("%s %s attempt %d failed; the pass goes on", what, run_id, attempt)
            return False


def _observe(ctx: WorkerContext) -> dict[tuple[str, int], tuple[Executor, AttemptObservation]]:
    """What every executor of this worker sees (each once: local clusters share one)."""
    with session_scope(read_sessions(ctx.factory)) as session:
        rows = session.execute(select(Cluster.name, Cluster.executor)).all()
    executors: dict[int, Executor] = {}
    for where in [Where(name, kind) for name, kind in rows] or [LOCAL]:
        try:
            executor = ctx.executors(where)
        except UnknownExecutor:
            continue  # another worker's cluster
        executors.setdefault(id(executor), executor)
    found = {}
    for executor in executors.values():
        found.update({(o.run_id, o.attempt): (executor, o) for o in executor.observe()})
    return found


def _active_runs(session: Session) -> list[ActiveRun]:
    # The progress row's heartbeat counts only if it is this attempt's.
    beat = (RunProgress.run_id == Run.id) & (RunProgress.attempt == Run.attempt)
    rows = session.execute(
        select(Run.id, Run.status, Run.attempt, Run.updated_at, Cluster.name, Cluster.executor)
        # Only the spec's scheduling part: this runs every pass, for every live run.
        .add_columns(Run.spec["scheduling"], RunAttempt.started_at, Run.started_at)
        .add_columns(RunProgress.last_heartbeat_at, RunAttempt.preempted_by)
        .outerjoin(RunAttempt, (RunAttempt.run_id == Run.id) & (RunAttempt.attempt == Run.attempt))
        .outerjoin(Cluster, Cluster.name == RunAttempt.cluster)
        .outerjoin(RunProgress, beat)
        .where(Run.status.in_([s.value for s in ACTIVE]))
    ).all()
    return [_active_run(*row) for row in rows]


def _active_run(
    run_id: str, status: str, attempt: int, updated_at: datetime, cluster: str | None,
    kind: str | None, scheduling: dict[str, Any] | None, launched_at: datetime | None,
    running_since: datetime | None, last_heartbeat_at: datetime | None,
    preempted_by: str | None,
) -> ActiveRun:  # fmt: skip
    where = Where(cluster, kind or "") if cluster else LOCAL
    return ActiveRun(
        run_id,
        RunStatus(status),
        attempt,
        updated_at,
        where,
        dict(scheduling or {}),
        launched_at,
        running_since,
        last_heartbeat_at,
        preempted_by,
    )


def _reconcile_run(
    ctx: WorkerContext, run: ActiveRun, seen: AttemptObservation | None, observed_at: datetime
) -> bool:
    try:
        if run.status is RunStatus.STOPPING:
            return stop_run(ctx, run.id)
        if run.preempted_by is not None and not _succeeded(seen):
            return _stop_preempted(ctx, run, seen)
        if (ending := _over_time_limit(ctx, run, seen)) is not None:
            return _stop_over_limit(ctx, run, ending)
        if seen is None:
            return _unseen(ctx, run, observed_at)
        return _observed(ctx, run, seen)
    except UnknownExecutor:
        return False  # another worker's cluster


def _over_time_limit(
    ctx: WorkerContext, run: ActiveRun, seen: AttemptObservation | None
) -> Ending | None:
    """The ending of an attempt past a time limit (core/runs/time_limits.py), else None. An
    attempt seen succeeding keeps its success: it finished within the pass that judged it."""
    outcome = classify_attempt(seen.ranks) if seen is not None else None
    if outcome is not None and outcome.phase is AttemptPhase.SUCCEEDED:
        return None
    waiting = [r.message for r in seen.ranks if r.phase is RankPhase.PENDING] if seen else []
    last_seen = next((message for message in waiting if message), "")
    default = ctx.settings.max_pending_seconds
    ending = over_limit(run.scheduling, run.clock, utcnow(), default, last_seen)
    if ending is None:
        return None
    if seen is not None:
        ending = replace(ending, where=seen.where, image_digest=seen.image_digest)
    return ctx.over_limit.setdefault((run.id, run.attempt), ending)


def _succeeded(seen: AttemptObservation | None) -> bool:
    return seen is not None and classify_attempt(seen.ranks).phase is AttemptPhase.SUCCEEDED


def _stop_preempted(ctx: WorkerContext, run: ActiveRun, seen: AttemptObservation | None) -> bool:
    """A preemption victim: SIGTERM now (the runtime's `should_stop()` turns true), SIGKILL
    after `preemption_grace_seconds`, then back to the queue with reason `preempted`, its
    retry budgets untouched; the next admission resumes it from its last checkpoint."""
    executor = ctx.executors(run.where)
    if not executor.cancel(run.id, run.attempt, ctx.settings.preemption_grace_seconds):
        return False  # still inside its checkpoint grace: the next pass asks again
    message = f"attempt {run.attempt} was preempted by {run.preempted_by} (higher priority)"
    ending = Ending(
        AttemptOutcome.PREEMPTED,
        StatusReason.PREEMPTED,
        message,
        where=seen.where if seen else "",
        image_digest=seen.image_digest if seen else "",
        preempted_by=run.preempted_by or "",
    )
    settled = _apply_ending(ctx, run.id, run.attempt, ending, {run.status})
    if settled:
        log.info("%s attempt %d stopped: %s", run.id, run.attempt, message)
        executor.cleanup(run.id, run.attempt)
    return settled


def _stop_over_limit(ctx: WorkerContext, run: ActiveRun, ending: Ending) -> bool:
    """Stop the attempt (as a cancel does, over as many passes as its grace period takes),
    then settle it with the limit's ending. The limit is judged again on each pass from the
    database alone, so the attempt's objects vanishing meanwhile reads as nothing else."""
    executor = ctx.executors(run.where)
    if not executor.cancel(run.id, run.attempt):
        return False
    settled = _apply_ending(ctx, run.id, run.attempt, ending, {run.status})
    ctx.over_limit.pop((run.id, run.attempt), None)
    if settled:
        log.info("%s attempt %d stopped: %s", run.id, run.attempt, ending.message)
        executor.cleanup(run.id, run.attempt)
    return settled


def _observed(ctx: WorkerContext, run: ActiveRun, seen: AttemptObservation) -> bool:
    outcome = classify_attempt(seen.ranks)
    if outcome.phase is AttemptPhase.STARTING:
        return False
    if outcome.phase is AttemptPhase.RUNNING:
        if run.status is RunStatus.STARTING:
            _mark_running(ctx, run, seen)
        return False
    _keep_leftovers(ctx, ctx.executors(run.where), run.id, run.attempt)
    exit_code = 0 if outcome.phase is AttemptPhase.SUCCEEDED else _exit_code(seen)
    ending = Ending(
        AttemptOutcome(outcome.phase.value),
        outcome.reason,
        outcome.message,
        exit_code,
        seen.where,
        seen.image_digest,
    )
    # The attempt ended whatever the run's status now: another worker may have moved it from
    # `starting` to `running` since this pass loaded it. Its files go only once it is settled:
    # erased unsettled, the next pass would find a live run the executor no longer sees.
    settled = _apply_ending(ctx, run.id, run.attempt, ending, {*LIVE})
    if settled:
        ctx.executors(run.where).cleanup(run.id, run.attempt)
    return settled  # not settled: someone else did (or the run is stopping); a later pass tidies


def _ended(seen: AttemptObservation) -> bool:
    return classify_attempt(seen.ranks).phase in ENDED


def _keep_leftovers(ctx: WorkerContext, executor: Executor, run_id: str, attempt: int) -> None:
    """Outputs, loose checkpoint files and TensorBoard files, before the attempt is settled and
    cleaned up: from its folder on this machine, else (a pod's) from what it uploaded; a
    failure is logged and the attempt settled all the same (it must not hold the run)."""
    found = executor.leftovers(run_id, attempt)
    try:
        if found is not None:
            harvest(ctx.factory, ctx.settings, run_id, attempt, found)
        elif executor.kind == ExecutorKind.KUBERNETES:
            keep_uploaded(ctx.factory, ctx.settings, run_id, attempt)
    except Exception:
        log.exception("keeping the outputs of %s attempt %d failed", run_id, attempt)


def _exit_code(seen: AttemptObservation) -> int | None:
    codes = [r.exit_code for r in sorted(seen.ranks, key=lambda r: r.rank) if r.exit_code]
    return codes[0] if codes else None


def _mark_running(ctx: WorkerContext, run: ActiveRun, seen: AttemptObservation) -> None:
    with session_scope(ctx.factory) as session:
        row = session.get(Run, run.id, with_for_update=True, options=BARE)
        if row is None or row.status != RunStatus.STARTING or row.attempt != run.attempt:
            return
        transition(session, row, RunStatus.RUNNING, StatusReason.RUNNING, "all ranks running")
        mark_started(session, run.id, run.attempt, seen.where, seen.image_digest)


def _unseen(ctx: WorkerContext, run: ActiveRun, observed_at: datetime) -> bool:
    """The executor does not know the attempt: not launched yet, or lost."""
    if run.status is RunStatus.STARTING:
        with session_scope(ctx.factory) as session:
            delivery = deliveries.delivery_state(session, Task.LAUNCH, run.id, run.attempt)
            if delivery is None or delivery.completed_at is None:
                _redrive_launch_when_due(ctx.settings, session, run, delivery)
                return False
        message = f"attempt {run.attempt} was launched, then the executor lost it"
    else:
        message = f"the executor no longer sees attempt {run.attempt}"
    return _lost(ctx, run, message, observed_at)


def _redrive_launch_when_due(
    settings: Settings, session: Session, run: ActiveRun, delivery: TaskDelivery | None
) -> None:
    last = max(run.updated_at, delivery.updated_at) if delivery else run.updated_at
    if utcnow() - last < timedelta(seconds=settings.launch_grace_seconds):
        return
    outbox.enqueue(session, Task.LAUNCH, run_id=run.id, attempt=run.attempt)
    deliveries.note_redrive(session, Task.LAUNCH, run.id, run.attempt)
    log.warning("re-driving the launch of %s attempt %d", run.id, run.attempt)


def _lost(ctx: WorkerContext, run: ActiveRun, message: str, observed_at: datetime) -> bool:
    """A system failure, on evidence newer than the attempt's last change only."""
    ending = Ending(AttemptOutcome.SYSTEM_FAILED, StatusReason.NODE_LOST, message)
    with session_scope(ctx.factory) as session:
        row = session.get(Run, run.id, with_for_update=True, options=BARE)
        if row is None or row.status != run.status or row.attempt != run.attempt:
            return False  # someone else settled it first
        if _changed_since(session, row, observed_at):
            log.info("%s attempt %d moved after the observation; not judged", run.id, run.attempt)
            return False  # the next pass judges it on an observation taken after the move
        settle(session, row, ending, ctx.settings.system_retry_limit)
        return True


def _changed_since(session: Session, run: Run, observed_at: datetime) -> bool:
    """Whether the run's status or its attempt's launch changed at or after `observed_at`.

    The one freshness rule for "the executor does not see it": an observation begun before a
    launch completed, or before another worker moved the run (`starting → running` on its own,
    newer observation), cannot show the attempt, so its absence proves nothing. Both times are
    taken after the facts they record (the launch returned; the attempt was seen running), so
    a change older than the observation's start was visible to it.
    """
    last = run.updated_at
    delivery = deliveries.delivery_state(session, Task.LAUNCH, run.id, run.attempt)
    if delivery is not None and delivery.completed_at is not None:
        last = max(last, delivery.completed_at)
    return last >= observed_at


def _stop_orphan(executor: Executor, run_id: str, attempt: int) -> bool:
    """Processes no active run claims: stop them, then forget them."""
    if executor.cancel(run_id, attempt):
        executor.cleanup(run_id, attempt)
        log.info("stopped orphaned attempt %s/%d", run_id, attempt)
        return True
    return False
