"""Secrets resolve at launch for the run's own org only, on both executors (issue 12, finding 3).

Before: `{secret: NAME}` came from the worker's `TRAINPORT_SECRET_<NAME>` (local) or from one
Kubernetes Secret shared by every org, so org B's run read the value org A provisioned. Now the
worker resolves the run's own org's value (its project's over the org-wide one) in the launch
transaction; a name the org has not set fails the launch. Runs here are real: the scheduler,
`launch_attempt` and the reconciler in this process, the local executor's processes, and the
Kubernetes executor against the fake API server.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.app_state import app_engine
from core.secrets.service import legacy_worker_variables
from core.settings import Settings
from tests.factories import Tenant, create_run, make_tenant
from tests.support.scheduling import sessions
from tests.support.secrets import canary, set_secret
from workers import scheduler
from workers.executors.registry import executor_for
from workers.reconciler import WorkerContext, launch_attempt, reconcile_once

PRINT_DIGEST = (
    "import hashlib, os; "
    "print('digest', hashlib.sha256(os.environ['WANDB_API_KEY'].encode()).hexdigest())"
)


@pytest.fixture
def settings(make_database: Callable[[], str], tmp_path: Path) -> Settings:
    return Settings(
        database_url=make_database(),
        state_dir=tmp_path / "state",
        key_touch_interval_seconds=0,
        local_cpu_slots=4,
        cancel_grace_seconds=1,
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    yield TestClient(app, raise_server_exceptions=False)
    app_engine(app).dispose()


def _context(api: TestClient, settings: Settings) -> WorkerContext:
    return WorkerContext(sessions(api), settings, lambda where: executor_for(where, settings))


def _run_to_the_end(api: TestClient, settings: Settings, tenant: Tenant, run_id: str) -> Any:
    ctx = _context(api, settings)
    [admitted] = scheduler.run_pass(ctx.factory, settings, [run_id]).admitted
    launch_attempt(ctx, run_id, admitted.attempt)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = api.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()
        if run["status"] in {"succeeded", "failed"}:
            return run
        reconcile_once(ctx)
        time.sleep(0.05)  # bounded poll: a rank's exit reaches this process through files
    raise AssertionError(f"run {run_id} never finished: {run}")


def _log(api: TestClient, tenant: Tenant, run_id: str) -> str:
    response = api.get(f"/v1/runs/{run_id}/logs", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.text


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _secret_run(api: TestClient, tenant: Tenant, **extra: Any) -> str:
    run = create_run(
        api,
        tenant,
        command=[sys.executable, "-c", PRINT_DIGEST],
        env={"WANDB_API_KEY": {"secret": "wandb"}},
        **extra,
    )
    return str(run["id"])


def test_each_orgs_run_gets_its_own_orgs_value(api: TestClient, settings: Settings) -> None:
    org_a, org_b = make_tenant(api), make_tenant(api)
    value_a, value_b = canary(), canary()
    set_secret(api, org_a, "wandb", value_a)
    set_secret(api, org_b, "wandb", value_b)
    for tenant, value in ((org_a, value_a), (org_b, value_b)):
        run_id = _secret_run(api, tenant)
        done = _run_to_the_end(api, settings, tenant, run_id)
        assert done["status"] == "succeeded", done["status_message"]
        assert f"digest {_digest(value)}" in _log(api, tenant, run_id)


def test_a_run_naming_a_secret_only_another_org_set_fails_to_launch(
    api: TestClient, settings: Settings
) -> None:
    org_a, org_b = make_tenant(api), make_tenant(api)
    value_a = canary()
    set_secret(api, org_a, "wandb", value_a)
    run_id = _secret_run(api, org_b)
    done = _run_to_the_end(api, settings, org_b, run_id)
    assert done["status"] == "failed"
    assert done["status_reason"] == "system_error"
    assert "env WANDB_API_KEY needs secret 'wandb'" in done["status_message"]
    assert "has not set" in done["status_message"]
    assert done["attempts"][0]["outcome"] == "system_failed"


def test_a_projects_value_wins_over_the_org_wide_one(api: TestClient, settings: Settings) -> None:
    org = make_tenant(api)
    api.post("/v1/projects", json={"name": "lab"}, headers=org.headers)
    org_wide, for_lab = canary(), canary()
    set_secret(api, org, "wandb", org_wide)
    set_secret(api, org, "wandb", for_lab, project="lab")
    in_lab = _secret_run(api, org, project="lab")
    elsewhere = _secret_run(api, org)
    for run_id, value in ((in_lab, for_lab), (elsewhere, org_wide)):
        done = _run_to_the_end(api, settings, org, run_id)
        assert done["status"] == "succeeded", done["status_message"]
        assert f"digest {_digest(value)}" in _log(api, org, run_id)


def test_a_rotated_value_reaches_the_next_launch(api: TestClient, settings: Settings) -> None:
    org = make_tenant(api)
    set_secret(api, org, "wandb", canary())
    newer = canary()
    api.put("/v1/secrets/wandb", json={"value": newer}, headers=org.headers)
    run_id = _secret_run(api, org)
    done = _run_to_the_end(api, settings, org, run_id)
    assert done["status"] == "succeeded", done["status_message"]
    assert f"digest {_digest(newer)}" in _log(api, org, run_id)


def test_worker_variables_named_like_the_old_scheme_are_ignored(
    api: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINPORT_SECRET_WANDB", "a-global-value-from-the-worker")
    org = make_tenant(api)
    run_id = _secret_run(api, org)
    done = _run_to_the_end(api, settings, org, run_id)
    assert done["status"] == "failed"
    assert "needs secret 'wandb'" in done["status_message"]


def test_a_worker_names_its_leftover_secret_variables_so_they_can_be_removed() -> None:
    environ = {"TRAINPORT_SECRET_WANDB": "x", "TRAINPORT_SECRET_KEY": "y", "PATH": "/bin"}
    environ["TRAINPORT_SECRETS_KEY"] = "z"
    assert legacy_worker_variables(environ) == ["TRAINPORT_SECRET_WANDB"]
