"""`trainport run -f run.yaml --plan --manifests`: the objects a Kubernetes cluster would get,
as YAML documents (or a JSON list), from a live API whose installation runs on Kubernetes; on a
local installation it says there are none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from core.db import session_scope
from core.kubernetes import naming
from core.scheduling.clusters import Inventory, register_cluster
from core.scheduling.preflight import PLANNED_ID
from core.settings import Settings
from tests.factories import Tenant, make_tenant
from tests.support.cli import trainport_cli
from tests.support.servers import ROOT, _wait_until_ready, free_port

# Not TRAINPORT_KUBERNETES_CLUSTERS: an API that names Kubernetes clusters refuses a local
# object store at start-up, so this one renders `east` with its TRAINPORT_KUBERNETES_* settings.
KUBERNETES = {
    "TRAINPORT_LOCAL_CLUSTER": "false",
    "TRAINPORT_KUBERNETES_NAMESPACE": "east-runs",
    "TRAINPORT_INSTALLATION_ID": "cli-test",
}


@pytest.fixture
def kube_env(
    make_database: Callable[[], str],
    tmp_path: Path,
    config_file: Path,
) -> Iterator[dict[str, str]]:
    """A live API on its own database whose only cluster is the Kubernetes cluster `east`,
    and the CLI's environment for a tenant of it."""
    url = make_database()
    app = create_app(Settings(database_url=url, key_touch_interval_seconds=0))
    with session_scope(app.state.sessionmaker) as session:
        register_cluster(session, "east", "kubernetes", Inventory({}, None, 1, {}))
    tenant: Tenant = make_tenant(TestClient(app))
    app.state.engine.dispose()
    port, log = free_port(), tmp_path / "server.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")},
        "TRAINPORT_DATABASE_URL": url,
        "TRAINPORT_KEY_TOUCH_INTERVAL_SECONDS": "0",
        **KUBERNETES,
    }
    command = [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1"]
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_until_ready(f"http://127.0.0.1:{port}", server, log)
        yield {
            **env,
            "TRAINPORT_CONFIG": str(config_file),
            "TRAINPORT_API_URL": f"http://127.0.0.1:{port}",
            "TRAINPORT_API_KEY": tenant.key,
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_plan_manifests_prints_the_job_and_service_as_yaml_documents_or_json(
    kube_env: dict[str, str],
    run_file: Path,
) -> None:
    done = trainport_cli(kube_env, "run", "-f", str(run_file), "--plan", "--manifests")
    assert done.returncode == 0, done.stderr
    job, service = yaml.safe_load_all(done.stdout)
    assert (job["kind"], service["kind"]) == ("Job", "Service")
    assert job["metadata"]["name"] == naming.attempt_name(PLANNED_ID, 1)
    assert job["metadata"]["namespace"] == "east-runs"
    as_json = trainport_cli(
        kube_env, "run", "-f", str(run_file), "--plan", "--manifests", "-o", "json"
    )
    assert json.loads(as_json.stdout) == [job, service]
    people = trainport_cli(kube_env, "run", "-f", str(run_file), "--plan")
    assert f"would apply: Job {job['metadata']['name']} in east-runs" in people.stdout


def test_plan_manifests_on_local_processes_says_there_are_none(
    cli_env: dict[str, str],
    run_file: Path,
) -> None:
    done = trainport_cli(cli_env, "run", "-f", str(run_file), "--plan", "--manifests")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "No Kubernetes manifests" in done.stderr
    misused = trainport_cli(cli_env, "run", "-f", str(run_file), "--manifests")
    assert misused.returncode != 0
