"""The training API tests' helpers: apps' settings, S3 buckets, and runs moved along their
lifecycle the way the scheduler and the launch task move them (their launch environment too).

Plain functions, shared by every test package that needs them (the apps built from them are
tests/core/conftest.py's fixtures; the S3 endpoint is tests/support/s3.py's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from fastapi.testclient import TestClient

from api.app_state import app_sessionmaker, app_settings
from core.db import session_scope
from core.launch import freeze_and_mint_environment
from core.models import Run, utcnow
from core.runs.attempts import AttemptOutcome, Ending, Grant, open_attempt, settle
from core.runs.states import RunStatus, StatusReason, transition
from core.scheduling.admission import accept_pending
from core.settings import Settings
from tests.factories import Tenant, app_of

SECRET = "training-tests-secret-key"


S3_CREDENTIALS = {"s3_access_key_id": "testing", "s3_region": "us-east-1"}


def s3_settings(endpoint: str, bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "storage_backend": "s3",
        "s3_bucket": bucket,
        "s3_endpoint_url": endpoint,
        "s3_secret_access_key": "testing",
        **S3_CREDENTIALS,
        **extra,
    }


def make_bucket(endpoint: str, name: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=name)
    return client


def _settings(postgres_url: str, root: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=postgres_url,
        key_touch_interval_seconds=0,
        state_dir=root / "state",
        storage_dir=root / "storage",
        secret_key=SECRET,
        **extra,
    )


@dataclass(frozen=True)
class Started:
    """A run in `starting`, with the environment its processes were given."""

    run_id: str
    attempt: int
    env: dict[str, str]

    @property
    def token(self) -> str:
        return self.env["TRAINPORT_RUN_TOKEN"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def datasets(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.env["TRAINPORT_DATASETS"])
        return found


def submit(client: TestClient, tenant: Tenant, **spec: Any) -> str:
    body = {"command": ["python", "-c", "pass"], **spec}
    response = client.post("/v1/runs", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def admit(client: TestClient, run_id: str) -> None:
    """The scheduler's accept step (pending → queued), which pins datasets."""
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        accept_pending(session, [run_id])


def start(client: TestClient, run_id: str) -> Started:
    """Admit the queued run as the next attempt and build its launch environment."""
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        run = session.get(Run, run_id, with_for_update=True)
        assert run is not None
        if run.status == RunStatus.PENDING:
            accept_pending(session, [run_id])
        transition(session, run, RunStatus.STARTING, StatusReason.LAUNCHING, next_attempt=True)
        open_attempt(session, run, Grant("local", None, 0, 1), utcnow())
        env = freeze_and_mint_environment(session, run, run.attempt, app_settings(app))
        return Started(run.id, run.attempt, env)


def launch(client: TestClient, run_id: str, api_url: str) -> dict[str, str]:
    """Admit and start the run's next attempt; the environment its ranks would get, with the
    API's URL (`api_url`, a live server's) for the runtime to reach."""
    return {**start(client, run_id).env, "TRAINPORT_API_URL": api_url}


def end_attempt(client: TestClient, run_id: str, outcome: AttemptOutcome) -> str:
    """The attempt ends as the reconciler would settle it: retried (queued) or finished."""
    app = app_of(client)
    reason = (
        StatusReason.COMPLETED if outcome is AttemptOutcome.SUCCEEDED else StatusReason.NODE_LOST
    )
    with session_scope(app_sessionmaker(app)) as session:
        run = session.get(Run, run_id, with_for_update=True)
        assert run is not None
        return settle(session, run, Ending(outcome, reason, "ended by the test"), 3).value


def create_dataset(client: TestClient, tenant: Tenant, name: str) -> None:
    response = client.post("/v1/datasets", json={"name": name}, headers=tenant.headers)
    assert response.status_code == 201, response.text


def upload(
    client: TestClient, tenant: Tenant, name: str, files: dict[str, bytes]
) -> tuple[int, dict[str, Any]]:
    parts = [("files", (path, data, "application/octet-stream")) for path, data in files.items()]
    response = client.post(f"/v1/datasets/{name}/versions", files=parts, headers=tenant.headers)
    assert response.status_code in {200, 201}, response.text
    body: dict[str, Any] = response.json()
    return response.status_code, body
