"""Runs hold no platform credential (issue 12): the environment every rank of a run is given,
on the local executor (the launch environment itself) and on Kubernetes (the rendered pod
spec), names no storage key, signing key, database or broker URL of the platform's."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.settings import Settings
from tests.factories import make_tenant
from tests.security.storage_fixtures import (
    PLATFORM_CREDENTIALS,
    s3_endpoint,
    storage_api,
    storage_app,
)
from tests.training_api.conftest import create_dataset, start, submit, upload
from workers.executors.base import LaunchRequest
from workers.executors.kubernetes.manifests import ClusterConfig, build_attempt, to_dict

__all__ = ["s3_endpoint", "storage_api", "storage_app"]  # fixtures used below

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
    app: FastAPI = storage_api.app  # type: ignore[assignment]
    env = launched_env(storage_api)
    assert env["TRAINPORT_CHECKPOINT_URI"].startswith("s3://")  # S3 storage is in use
    assert_holds_no_credential(env, json.dumps(env), app.state.settings)


def test_a_rendered_kubernetes_pod_holds_no_platform_credential(storage_api: TestClient) -> None:
    app: FastAPI = storage_api.app  # type: ignore[assignment]
    env = launched_env(storage_api)
    spec: dict[str, Any] = {"image": "python:3.11-slim", "command": ["python", "train.py"]}
    request = LaunchRequest("run_01jd5xabcdefghjkmnpqrstvwx", "org_01jd5x", 1, spec, env)
    built = build_attempt(request, ClusterConfig(default_image="python:3.11-slim"))
    pod = to_dict(built.job)["spec"]["template"]["spec"]
    names = {v["name"]: v for c in pod["containers"] for v in c.get("env", [])}
    rendered = json.dumps([to_dict(built.job), to_dict(built.service)])
    assert_holds_no_credential({n: "" for n in names}, rendered, app.state.settings)
    assert "TRAINPORT_RUN_TOKEN" in names  # the run's own credential is the only one
