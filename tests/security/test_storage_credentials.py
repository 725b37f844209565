"""Runs hold no platform credential (issue 12): the environment every rank of a run is given,
on the local executor (the launch environment itself) and on Kubernetes (the rendered pod
spec), names no storage key, signing key, database or broker URL of the platform's."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app_state import app_settings
from core.kubernetes.config import ClusterConfig
from core.kubernetes.manifests import build_attempt
from core.launch_request import LaunchRequest
from core.logs import LogStore
from core.settings import Settings
from tests.factories import app_of, make_tenant
from tests.security.storage_fixtures import PLATFORM_CREDENTIALS, storage_api, storage_app
from tests.support.executors import FINISHED, PY, launch_request, wait_until
from tests.support.training import create_dataset, start, submit, upload
from workers.executors.local import LocalExecutor

__all__ = ["storage_api", "storage_app"]  # fixtures used below
DUMP_ENV = "import json, os; print(json.dumps(dict(os.environ)))"

FORBIDDEN_NAMES = ("TRAINPORT_SECRET_KEY", "TRAINPORT_DATABASE_URL", "TRAINPORT_BROKER_URL")


def platform_secrets(settings: Settings) -> list[str]:
    """Every credential the platform holds that a run must never be handed."""
    return [
        *PLATFORM_CREDENTIALS.values(),
        settings.database_url,
        settings.broker_url,
        "broker-password-no-run-may-see",
    ]


def launched_env(client: TestClient) -> dict[str, str]:
    """The launch environment of a run of a fresh org that pins a dataset on S3 storage."""
    tenant = make_tenant(client)
    create_dataset(client, tenant, "corpus")
    upload(client, tenant, "corpus", {"a.txt": b"alpha"})
    run_id = submit(client, tenant, data={"datasets": ["corpus"]})
    return start(client, run_id).env


def assert_holds_no_credential(env: dict[str, str], text: str, settings: Settings) -> None:
    leaked_names = [n for n in env if n.startswith("AWS_") or n in FORBIDDEN_NAMES]
    assert leaked_names == []
    assert [s for s in platform_secrets(settings) if s in text] == []


def test_the_launch_environment_on_s3_holds_no_platform_credential(
    storage_api: TestClient,
) -> None:
    app = app_of(storage_api)
    env = launched_env(storage_api)
    assert env["TRAINPORT_CHECKPOINT_URI"].startswith("s3://")  # S3 storage is in use
    assert_holds_no_credential(env, json.dumps(env), app_settings(app))


def test_a_rendered_kubernetes_pod_holds_no_platform_credential(storage_api: TestClient) -> None:
    app = app_of(storage_api)
    env = launched_env(storage_api)
    spec: dict[str, Any] = {"image": "python:3.11-slim", "command": ["python", "train.py"]}
    request = LaunchRequest("run_01jd5xabcdefghjkmnpqrstvwx", "org_01jd5x", 1, spec, env)
    built = build_attempt(request, ClusterConfig(default_image="python:3.11-slim"))
    pod = built.job["spec"]["template"]["spec"]
    names = {v["name"]: v for c in pod["containers"] for v in c.get("env", [])}
    rendered = json.dumps([built.job, built.service])
    assert_holds_no_credential({n: "" for n in names}, rendered, app_settings(app))
    assert "TRAINPORT_RUN_TOKEN" in names  # the run's own credential is the only one


def test_a_local_rank_holds_no_platform_credential(
    storage_api: TestClient, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker itself holds the credentials (as in production); its ranks must not."""
    app = app_of(storage_api)
    settings: Settings = app_settings(app)
    worker_env = {
        "AWS_ACCESS_KEY_ID": PLATFORM_CREDENTIALS["s3_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": PLATFORM_CREDENTIALS["s3_secret_access_key"],
        "TRAINPORT_S3_SECRET_ACCESS_KEY": PLATFORM_CREDENTIALS["s3_secret_access_key"],
        "TRAINPORT_SECRET_KEY": PLATFORM_CREDENTIALS["secret_key"],
        "TRAINPORT_DATABASE_URL": settings.database_url,
        "TRAINPORT_BROKER_URL": settings.broker_url,
    }
    for name, value in worker_env.items():
        monkeypatch.setenv(name, value)
    log_store = LogStore(tmp_path / "logs")
    executor = LocalExecutor(tmp_path / "state", log_store, "http://api.test", grace_seconds=0.5)
    request = dataclasses.replace(
        launch_request([PY, "-c", DUMP_ENV]), env=launched_env(storage_api)
    )
    try:
        executor.launch(request)
        wait_until(executor, request, FINISHED, timeout=30.0)
        lines = log_store.ref(request.run_id, 1, 0).path.read_text().splitlines()
    finally:
        executor.cleanup(request.run_id, request.attempt)
    printed = [line.split(" ", 2)[2] for line in lines if " stdout " in line]
    env: dict[str, str] = json.loads(printed[0])
    assert env["TRAINPORT_RUN_TOKEN"].startswith("tpr_")  # the rank did get its own token
    assert_holds_no_credential(env, json.dumps(env), settings)
    assert os.environ["AWS_SECRET_ACCESS_KEY"]  # while the worker held them all along
