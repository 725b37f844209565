"""A command that cannot start is the user's failure and is never retried, on both executors
(issue 15: exit 127 was retried three times locally and failed fast on Kubernetes).

The one rule lives in `classify_attempt` (workers/executors/base.py), which both executors'
observations go through, and in `NEVER_RETRIED` (core/runs/attempts.py). Here, the Kubernetes
side from the pod statuses a kubelet reports; the local side end to end in test_end_to_end.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.kubernetes import naming
from core.runs.attempts import NEVER_RETRIED
from core.runs.states import StatusReason
from workers.executors.base import AttemptPhase, classify_attempt
from workers.executors.kubernetes.observations import group_attempts, observe_attempt


def _failed_pod(terminated: dict[str, Any]) -> dict[str, Any]:
    meta = {
        "name": "tp-run-x-1-0",
        "namespace": "tp-org",
        "labels": {naming.ATTEMPT_KEY: "1"},
        "annotations": {naming.RUN_ID_KEY: "run_x", naming.COMPLETION_INDEX_KEY: "0"},
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
    container = {"name": "trainer", "state": {"terminated": terminated}}
    return {"metadata": meta, "status": {"phase": "Failed", "containerStatuses": [container]}}


@pytest.mark.parametrize(
    "terminated",
    [
        {"exitCode": 128, "reason": "StartError", "message": 'exec: "trian": not found'},
        {"exitCode": 127, "reason": "ContainerCannotRun", "message": "no such file"},
        {"exitCode": 127, "reason": "Error"},  # a shell entry point that found no command
        {"exitCode": 126, "reason": "Error"},  # found, not executable
    ],
    ids=["StartError", "ContainerCannotRun", "exit-127", "exit-126"],
)
def test_kubernetes_a_command_that_cannot_start_fails_without_retry(
    terminated: dict[str, Any],
) -> None:
    views = group_attempts([], [_failed_pod(terminated)])
    seen = observe_attempt(views[("run_x", 1)], datetime.now(UTC), 300.0)
    outcome = classify_attempt(seen.ranks)
    assert outcome.phase is AttemptPhase.FAILED  # the user's, not the platform's
    assert outcome.reason is StatusReason.COMMAND_CANNOT_START
    assert outcome.reason in NEVER_RETRIED
    assert "cannot start" in outcome.message


def test_an_ordinary_failure_is_still_an_exit_code() -> None:
    views = group_attempts([], [_failed_pod({"exitCode": 3, "reason": "Error"})])
    seen = observe_attempt(views[("run_x", 1)], datetime.now(UTC), 300.0)
    assert classify_attempt(seen.ranks).reason is StatusReason.EXIT_CODE_NONZERO
