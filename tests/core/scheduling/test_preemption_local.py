"""Preemption on the local executor, with the real scheduler, launcher and reconciler and real
processes (issue 20): a preemptible run gets SIGTERM (what makes the runtime's `should_stop()`
true), saves a checkpoint within its grace, goes back to the queue with reason `preempted`
without spending `max_retries`, and resumes from that checkpoint once the urgent run is done.

The victim's "checkpoint" is a file its script writes on SIGTERM: the runtime's own
checkpoints go through the API, which these in-process tests do not serve over HTTP.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core import db
from core.logs import LogStore
from core.models import Run, RunAttempt, RunEvent
from core.runs import service
from core.runs.spec import RunCreate
from core.settings import Settings
from core.tenants.schemas import Principal, Role
from core.tenants.service import bootstrap
from workers import scheduler
from workers.executors.local import LocalExecutor
from workers.reconciler import WorkerContext, launch_attempt, reconcile_once

DEADLINE_S = 20.0
# Counts steps; on SIGTERM saves the step it reached and exits; a later attempt resumes there.
VICTIM = """if [ -e "$CKPT" ]; then echo "resumed from step $(cat "$CKPT")" > "$DONE"; exit 0; fi
i=0
trap 'echo $i > "$CKPT"; exit 143' TERM
while [ $i -lt 3000 ]; do i=$((i+1)); sleep 0.02; done
"""
URGENT = """while [ ! -e "$GATE" ]; do sleep 0.02; done"""


@pytest.fixture
def ctx(factory: sessionmaker[Session], fresh_url: str, tmp_path: Path) -> Iterator[WorkerContext]:
    settings = Settings(
        database_url=fresh_url,
        state_dir=tmp_path / "state",
        local_cpu_slots=1,
        preemption_grace_seconds=10,
    )
    executor = LocalExecutor(settings.state_dir, LogStore(settings.log_root), "", 1.0)
    yield WorkerContext(factory, settings, lambda where: executor)
    (tmp_path / "gate").write_text("")
    for seen in executor.observe():  # never leave a process behind
        deadline = time.monotonic() + DEADLINE_S
        while not executor.cancel(seen.run_id, seen.attempt, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        executor.cleanup(seen.run_id, seen.attempt)


def _create(
    ctx: WorkerContext, caller: Principal, script: str, env: dict[str, str], **scheduling: object
) -> str:
    body = RunCreate(command=["sh", "-c", script], env=env, scheduling=scheduling)
    with db.session_scope(ctx.factory) as session:
        return service.create_run(session, caller, body).run.id


def _status(ctx: WorkerContext, run_id: str) -> tuple[str, str | None]:
    with db.session_scope(ctx.factory) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run.status, run.status_reason


def _reconcile_until(ctx: WorkerContext, run_id: str, statuses: set[str]) -> tuple[str, str | None]:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        reconcile_once(ctx)
        if (found := _status(ctx, run_id))[0] in statuses:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{run_id} never reached {statuses}: {_status(ctx, run_id)}")


def _admit_and_launch(ctx: WorkerContext, run_id: str) -> int:
    admitted = scheduler.run_pass(ctx.factory, ctx.settings).admitted
    assert [a.run_id for a in admitted] == [run_id]
    assert launch_attempt(ctx, run_id, admitted[0].attempt) == "launched"
    return admitted[0].attempt


def test_a_preemptible_run_is_preempted_requeued_and_resumes_from_its_checkpoint(
    ctx: WorkerContext, tmp_path: Path
) -> None:
    env = {"CKPT": str(tmp_path / "ckpt"), "DONE": str(tmp_path / "done")}
    env["GATE"] = str(tmp_path / "gate")
    with db.session_scope(ctx.factory) as session:
        made = bootstrap(session, f"org-{secrets.token_hex(4)}")
    caller = Principal(made.org.id, made.key.id, Role.ADMIN)
    victim = _create(ctx, caller, VICTIM, env, priority="low", preemptible=True, max_retries=0)
    _admit_and_launch(ctx, victim)
    assert _reconcile_until(ctx, victim, {"running"}) == ("running", "running")

    urgent = _create(ctx, caller, URGENT, env, priority="high")
    assert scheduler.run_pass(ctx.factory, ctx.settings).admitted == []  # victims stop first
    assert _reconcile_until(ctx, victim, {"queued"}) == ("queued", "preempted")
    saved = int((tmp_path / "ckpt").read_text())  # it checkpointed within its grace
    assert saved > 0
    with db.session_scope(ctx.factory) as session:
        attempt = session.get(RunAttempt, (victim, 1))
        assert attempt is not None
        assert (attempt.outcome, attempt.reason, attempt.preempted_by) == (
            "preempted", "preempted", urgent
        )  # fmt: skip
        data = session.scalars(select(RunEvent.data).where(RunEvent.run_id == victim)).all()
    assert {"preempted_by": urgent, "attempt": 1} in data

    _admit_and_launch(ctx, urgent)  # the urgent run goes first; the victim waits its turn
    (tmp_path / "gate").write_text("")
    assert _reconcile_until(ctx, urgent, {"succeeded", "failed"})[0] == "succeeded"
    assert _admit_and_launch(ctx, victim) == 2
    assert _reconcile_until(ctx, victim, {"succeeded", "failed"})[0] == "succeeded"
    assert (tmp_path / "done").read_text().strip() == f"resumed from step {saved}"
