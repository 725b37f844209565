"""Limits the reconciler enforces on a running attempt, from the run as it is now (issue 15):

- `scheduling.max_duration` as last edited: a `PATCH` while the run runs applies to the
  running attempt, lowered or raised (seen: set to 5s, the run went on for 39 s and succeeded);
- `scheduling.hang_timeout`: no heartbeat for that long while running stops the attempt as a
  platform failure with reason `hung` (the SDK README promises hang detection).

End to end on the local executor with a real worker; the rule itself (core/runs/time_limits.py)
is a pure function of the run's facts and a clock, tested here with the clock injected. The
Kubernetes executor goes through the same reconciler step.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.runs.attempts import AttemptOutcome, Ending
from core.runs.states import RunStatus, StatusReason
from core.runs.time_limits import AttemptClock, over_limit
from tests.factories import Tenant, create_run, make_tenant
from tests.support.platforms import Shared, wait_for_file, wait_for_run

PY = sys.executable
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def client(shared_platform: Shared) -> TestClient:
    return shared_platform.client


def _patch(client: TestClient, tenant: Tenant, run_id: str, **fields: Any) -> dict[str, Any]:
    headers = {**tenant.headers, "If-Match": "*"}
    response = client.patch(f"/v1/runs/{run_id}", json=fields, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_lowering_max_duration_stops_the_running_attempt(client: TestClient) -> None:
    tenant = make_tenant(client)
    command = [PY, "-c", "import time; time.sleep(120)"]
    run = create_run(client, tenant, command=command, scheduling={"max_duration": "1h"})
    wait_for_run(client, tenant, run["id"], {"running"})
    assert (
        _patch(client, tenant, run["id"], max_duration="2s")["spec"]["scheduling"]["max_duration"]
        == 2
    )
    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"}, timeout=30)
    assert (done["status"], done["status_reason"]) == ("failed", "max_duration_exceeded")
    assert "max_duration (2s)" in done["status_message"]
    assert [(a["outcome"], a["reason"]) for a in done["attempts"]] == [
        ("failed", "max_duration_exceeded")
    ]


def test_raising_max_duration_lets_the_running_attempt_go_on(
    client: TestClient, tmp_path: Path
) -> None:
    tenant = make_tenant(client)
    marker, gate = tmp_path / "ran-past-the-first-limit", tmp_path / "gate"
    body = (
        "import os, time\n"
        "time.sleep(7)\n"
        f"open({str(marker)!r}, 'w').write('7s\\n')\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
    )
    run = create_run(client, tenant, command=[PY, "-c", body], scheduling={"max_duration": 4})
    wait_for_run(client, tenant, run["id"], {"running"})
    _patch(client, tenant, run["id"], max_duration="1h")
    wait_for_file(marker)  # 7 s after it started: past the limit it was launched with
    assert client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).json()["status"] == (
        "running"
    )
    gate.touch()
    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["status_message"]


def test_a_run_without_heartbeats_for_hang_timeout_fails_as_hung(client: TestClient) -> None:
    tenant = make_tenant(client)
    command = [PY, "-c", "import time; time.sleep(120)"]
    scheduling = {"hang_timeout": "2s", "retry_on_system_failure": False}
    run = create_run(client, tenant, command=command, scheduling=scheduling)
    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"}, timeout=30)
    assert (done["status"], done["status_reason"]) == ("failed", "hung")
    assert "hang_timeout (2s)" in done["status_message"]
    assert [(a["outcome"], a["reason"]) for a in done["attempts"]] == [("system_failed", "hung")]
    events = client.get(f"/v1/runs/{run['id']}/events", headers=tenant.headers).json()["data"]
    assert any(e.get("reason") == "hung" for e in events), events


Attempt = tuple[dict[str, Any], AttemptClock]


def _attempt(scheduling: dict[str, Any] | None = None, **facts: Any) -> Attempt:
    clock = AttemptClock(RunStatus.RUNNING, 1, launched_at=NOW, running_since=NOW, **facts)
    return scheduling or {}, clock


def limit_reached(attempt: Attempt, now: datetime) -> Ending | None:
    scheduling, clock = attempt
    return over_limit(scheduling, clock, now, default_max_pending=0)


def test_the_limits_read_the_spec_as_it_is_now() -> None:
    later = NOW + timedelta(seconds=61)
    assert limit_reached(_attempt(scheduling={"max_duration": 62}), later) is None
    ending = limit_reached(_attempt(scheduling={"max_duration": 60}), later)
    assert ending is not None
    assert (ending.outcome, ending.reason) == (
        AttemptOutcome.FAILED,
        StatusReason.MAX_DURATION_EXCEEDED,
    )
    assert limit_reached(_attempt(), later + timedelta(days=90)) is None  # no limits set


def test_a_heartbeat_resets_the_hang_clock() -> None:
    hang = {"hang_timeout": 60}
    quiet = _attempt(scheduling=hang)
    beating = _attempt(scheduling=hang, last_heartbeat_at=NOW + timedelta(seconds=50))
    at = NOW + timedelta(seconds=61)
    ending = limit_reached(quiet, at)
    assert ending is not None
    assert (ending.outcome, ending.reason) == (AttemptOutcome.SYSTEM_FAILED, StatusReason.HUNG)
    assert limit_reached(beating, at) is None
    assert limit_reached(beating, NOW + timedelta(seconds=111)) is not None
    stale = _attempt(scheduling=hang, last_heartbeat_at=NOW - timedelta(hours=1))
    assert limit_reached(stale, NOW + timedelta(seconds=30)) is None  # an earlier attempt's
