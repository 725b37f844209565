"""With the Kubernetes executor, a local (file://) object store is refused at start (issue 13).

Its files exist only in the API's and the workers' pods: a training pod could never read a
dataset or write a checkpoint there. Runs reach storage only through the API (presigned URLs
on S3, docs/runtime-api.md section 8), so the processes refuse to start and say what to set.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from core.storage.backends import StoreUnreachableByRuns, check_store_reachable_by_runs
from tests.support.platforms import platform_env
from tests.support.servers import ROOT

CLUSTERS = '{"main": {}}'


def _names_the_fix(message: str) -> None:
    assert "TRAINPORT_KUBERNETES_CLUSTERS (main)" in message
    assert "TRAINPORT_STORAGE_BACKEND=s3" in message
    for setting in ("TRAINPORT_S3_BUCKET", "TRAINPORT_S3_ENDPOINT_URL"):
        assert setting in message


def test_a_worker_with_kubernetes_clusters_and_a_local_store_refuses_to_start(
    fresh_url: str, tmp_path: Path
) -> None:
    env = platform_env(fresh_url, tmp_path / "state", kubernetes_clusters=CLUSTERS)
    done = subprocess.run(
        [sys.executable, "-m", "workers.embedded", "--no-migrate"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    _names_the_fix(done.stderr)
    assert "Traceback" not in done.stderr


def test_the_api_that_knows_the_executor_refuses_a_local_store_at_start(fresh_url: str) -> None:
    settings = Settings(database_url=fresh_url, kubernetes_clusters={"main": {}})
    app = create_app(settings)
    with pytest.raises(StoreUnreachableByRuns) as refused, TestClient(app):
        pass
    _names_the_fix(str(refused.value))


def test_an_s3_store_or_no_kubernetes_cluster_starts() -> None:
    check_store_reachable_by_runs(Settings())  # the embedded platform: local runs, local store
    s3 = Settings(kubernetes_clusters={"main": {}}, storage_backend="s3", s3_bucket="runs")
    check_store_reachable_by_runs(s3)
