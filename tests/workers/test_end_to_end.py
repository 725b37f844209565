"""A run through the whole platform: API → outbox → relay → Redis → Celery worker → processes.

One worker tree (worker, beat, relay) serves every test here; each test makes its own tenant.
Commands signal the test through marker files and wait at gates the test opens, so nothing
sleeps for a guessed time.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core import migrate
from core.settings import Settings
from tests.factories import create_run, make_tenant
from tests.support.platforms import Shared, StartPlatform, wait_for_file, wait_for_run

PY = sys.executable


@pytest.fixture
def client(shared_platform: Shared) -> TestClient:
    return shared_platform.client


def _script(body: str) -> list[str]:
    return [PY, "-c", body]


def test_a_run_goes_from_submission_to_succeeded(client: TestClient) -> None:
    tenant = make_tenant(client)
    run = create_run(client, tenant, command=_script("print(1)"))
    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["status_message"]
    [attempt] = done["attempts"]
    assert attempt["outcome"] == "succeeded"
    assert attempt["exit_code"] == 0
    assert attempt["cluster"] == "local"
    assert attempt["started_at"]
    assert attempt["ended_at"]
    assert attempt["where"]
    events = client.get(f"/v1/runs/{run['id']}/events", headers=tenant.headers).json()["data"]
    path = [e["to_status"] for e in events if e["kind"] == "status"]
    assert path[:2] == ["queued", "starting"]
    assert path[-1] == "succeeded"


def test_a_failing_command_retries_within_max_retries_then_fails(client: TestClient) -> None:
    tenant = make_tenant(client)
    run = create_run(
        client, tenant, command=_script("raise SystemExit(3)"), scheduling={"max_retries": 1}
    )
    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"})
    assert done["status"] == "failed"
    assert done["status_reason"] == "exit_code_nonzero"
    assert [(a["outcome"], a["exit_code"]) for a in done["attempts"]] == [
        ("failed", 3),
        ("failed", 3),
    ]


@pytest.mark.parametrize(
    "command",
    [["/nonexistent/bin/trainer", "--lr", "3e-4"], [PY, "-c", "raise SystemExit(127)"]],
    ids=["missing-executable", "exit-127"],
)
def test_a_command_that_cannot_start_fails_at_once_without_retries(
    client: TestClient, command: list[str]
) -> None:
    """Seen: exit 127 was retried three times locally while Kubernetes failed fast."""
    tenant = make_tenant(client)
    run = create_run(client, tenant, command=command, scheduling={"max_retries": 2})
    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"})
    assert (done["status"], done["status_reason"]) == ("failed", "command_cannot_start")
    assert [(a["outcome"], a["exit_code"]) for a in done["attempts"]] == [("failed", 127)]
    assert "cannot start" in done["status_message"]


def test_a_lost_process_is_retried_without_using_the_users_retries(
    client: TestClient, tmp_path: Path
) -> None:
    tenant = make_tenant(client)
    marker = tmp_path / "sessions"
    body = (
        "import os, time\n"
        f"with open({str(marker)!r}, 'a') as out: out.write(f'{{os.getsid(0)}}\\n')\n"
        "if os.environ['TRAINPORT_ATTEMPT'] == '1': time.sleep(120)\n"
    )
    run = create_run(client, tenant, command=_script(body))  # max_retries stays 0
    [session] = wait_for_file(marker)
    os.killpg(int(session), signal.SIGKILL)  # the shim and its command vanish: lost
    done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["status_message"]
    first, second = done["attempts"]
    assert (first["outcome"], first["reason"]) == ("system_failed", "node_lost")
    assert second["outcome"] == "succeeded"


def test_cancelling_a_running_run_leaves_no_process(client: TestClient, tmp_path: Path) -> None:
    tenant = make_tenant(client)
    marker = tmp_path / "pid"
    body = (
        "import os, time, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
        "time.sleep(120)\n"
    )
    run = create_run(client, tenant, command=_script(body))
    wait_for_run(client, tenant, run["id"], {"running"})
    [pid] = wait_for_file(marker)
    response = client.post(f"/v1/runs/{run['id']}/cancel", headers=tenant.headers)
    assert response.json()["status"] == "stopping"
    done = wait_for_run(client, tenant, run["id"], {"cancelled", "succeeded", "failed"})
    assert done["status"] == "cancelled"
    assert done["attempts"][0]["outcome"] == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)


def test_the_embedded_mode_runs_on_sqlite_with_no_server(
    start_platform: StartPlatform, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'trainport.db'}"
    migrate.upgrade(url)
    start_platform(url, broker_url="")  # the broker is a SQLite file in the state directory
    app = create_app(Settings(database_url=url, key_touch_interval_seconds=0))
    with TestClient(app) as client:
        tenant = make_tenant(client)
        run = create_run(client, tenant, command=_script("print(1)"))
        done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"}, wait=1)
    assert done["status"] == "succeeded", done["status_message"]
    assert (tmp_path / "state" / "broker.db").exists()
