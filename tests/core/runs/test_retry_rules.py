"""What an attempt's end means for its run: which failures retry, and against which budget."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.db import session_scope
from core.models import Run, RunAttempt
from core.runs.attempts import AttemptOutcome, Ending, settle
from core.runs.states import StatusReason
from tests.factories import make_tenant
from tests.support.scheduling import admit, cluster, sessions, submit

PULL = Ending(AttemptOutcome.FAILED, StatusReason.IMAGE_PULL_FAILED, "ErrImagePull: not found")
REFUSED = Ending(AttemptOutcome.FAILED, StatusReason.SPEC_REFUSED, "the run names no image")
CANNOT_START = Ending(
    AttemptOutcome.FAILED, StatusReason.COMMAND_CANNOT_START, "no such file", exit_code=127
)
CRASH = Ending(AttemptOutcome.FAILED, StatusReason.EXIT_CODE_NONZERO, "exit code 3", exit_code=3)
EVICTED = Ending(AttemptOutcome.SYSTEM_FAILED, StatusReason.EVICTED, "node drained")


def _end_attempt(client: TestClient, run_id: str, ending: Ending) -> str:
    with session_scope(sessions(client)) as session:
        run = session.get(Run, run_id, with_for_update=True)
        assert run is not None
        return settle(session, run, ending, 3).value


def _attempts(client: TestClient, run_id: str) -> int:
    with session_scope(sessions(client)) as session:
        return session.query(RunAttempt).filter_by(run_id=run_id).count()


@pytest.mark.parametrize(
    "ending",
    [PULL, REFUSED, CANNOT_START],
    ids=["image_pull_failed", "spec_refused", "command_cannot_start"],
)
def test_a_failure_no_retry_can_cure_fails_at_once_whatever_max_retries(
    fresh_client: TestClient, ending: Ending
) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=1)
    run_id = submit(fresh_client, tenant, scheduling={"max_retries": 2})
    assert admit(factory) == {run_id}
    assert _end_attempt(fresh_client, run_id, ending) == "failed"
    run = fresh_client.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()
    assert (run["status_reason"], run["attempt"]) == (ending.reason.value, 1)
    assert _attempts(fresh_client, run_id) == 1


def test_a_crash_retries_within_max_retries_and_an_eviction_apart_from_them(
    fresh_client: TestClient,
) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=1)
    run_id = submit(fresh_client, tenant, scheduling={"max_retries": 1})
    endings = [CRASH, EVICTED, EVICTED, CRASH]
    statuses = []
    for ending in endings:
        assert admit(factory) == {run_id}
        statuses.append(_end_attempt(fresh_client, run_id, ending))
    assert statuses == ["queued", "queued", "queued", "failed"]
    assert _attempts(fresh_client, run_id) == 4


def _crash(code: int) -> Ending:
    message = f"exit code {code}"
    return Ending(AttemptOutcome.FAILED, StatusReason.EXIT_CODE_NONZERO, message, exit_code=code)


@pytest.mark.parametrize(
    ("scheduling", "code", "after"),
    [
        ({"retry_on_exit_codes": [75]}, 75, "queued"),
        ({"retry_on_exit_codes": [75]}, 3, "failed"),
        ({"no_retry_exit_codes": [2]}, 2, "failed"),
        ({"no_retry_exit_codes": [2]}, 3, "queued"),
        ({"retry_on_exit_codes": [2], "no_retry_exit_codes": [2]}, 2, "failed"),
    ],
    ids=["listed-retries", "unlisted-fails", "never-retried", "other-retries", "never-wins"],
)
def test_retry_by_exit_code_is_one_rule_within_max_retries(
    fresh_client: TestClient, scheduling: dict[str, object], code: int, after: str
) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=1)
    run_id = submit(fresh_client, tenant, scheduling={"max_retries": 2, **scheduling})
    assert admit(factory) == {run_id}
    assert _end_attempt(fresh_client, run_id, _crash(code)) == after


def test_a_preempted_attempt_requeues_without_spending_max_retries(
    fresh_client: TestClient,
) -> None:
    factory, tenant = sessions(fresh_client), make_tenant(fresh_client)
    cluster(factory, a100=1)
    run_id = submit(fresh_client, tenant, scheduling={"max_retries": 0, "preemptible": True})
    for _ in range(3):
        assert admit(factory) == {run_id}
        ending = Ending(
            AttemptOutcome.PREEMPTED, StatusReason.PREEMPTED, "preempted", preempted_by="run_x"
        )
        assert _end_attempt(fresh_client, run_id, ending) == "queued"
    assert admit(factory) == {run_id}
    assert _end_attempt(fresh_client, run_id, _crash(3)) == "failed"
