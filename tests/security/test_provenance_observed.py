"""Provenance signs what the platform observed (issue 12, finding 5): an image the local executor
never ran, a commit nobody checked and a file digest only the runtime vouched for are marked as
such; what the platform saw itself (the kubelet's image digest, re-hashed checkpoint files,
pinned datasets) is marked `observed`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest
from fastapi.testclient import TestClient

from api.app_state import app_sessionmaker, app_settings
from core.db import session_scope
from core.launch import freeze_and_mint_environment
from core.models import Cluster, Run, utcnow
from core.runs.attempts import Grant, mark_started, open_attempt
from core.runs.states import RunStatus, StatusReason, transition
from core.scheduling.admission import accept_pending
from core.scheduling.clusters import Inventory, register_cluster
from tests.factories import Tenant, app_of, make_tenant
from tests.security.provenance_fixtures import app_with, provenance, started_run
from tests.support.checkpointing import commit_files
from tests.support.training import start, submit

NEVER_PULLED = "this-image/does-not-exist:never"


@pytest.fixture(scope="module")
def api(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The embedded default: the local cluster only, objects on the local filesystem."""
    with app_with(postgres_url, tmp_path_factory.mktemp("observed")) as client:
        yield client


def test_an_image_the_local_executor_never_ran_is_recorded_as_not_used(api: TestClient) -> None:
    org, run_id = started_run(api, image=NEVER_PULLED)
    record = provenance(api, org, run_id)["record"]
    assert record["spec"] == {**record["spec"], "source": "reported", "image": NEVER_PULLED}
    [attempt] = record["attempts"]
    assert (attempt["executor"], attempt["source"]) == ("local", "observed")
    image = attempt["image"]
    assert (image["source"], image["used"]) == ("observed", False)
    assert "local executor" in image["reason"]
    assert "digest" not in image


def test_a_run_launched_on_the_local_executor_is_warned_that_its_image_is_unused(
    api: TestClient,
) -> None:
    org = make_tenant(api)
    run_id = submit(api, org, image=NEVER_PULLED)
    assert api.get(f"/v1/runs/{run_id}", headers=org.headers).json()["warnings"] == []
    start(api, run_id)  # admitted to the local cluster and launched
    shown = api.get(f"/v1/runs/{run_id}", headers=org.headers).json()
    [warning] = shown["warnings"]
    assert "spec.image is not used on the local executor" in warning
    [listed] = api.get("/v1/runs", headers=org.headers).json()["data"]
    assert listed["warnings"] == [warning]  # every read says so, the list included
    plain = submit(api, org)
    start(api, plain)
    assert api.get(f"/v1/runs/{plain}", headers=org.headers).json()["warnings"] == []


def test_a_commit_named_by_the_spec_is_reported_and_no_code_digest_is_claimed(
    api: TestClient,
) -> None:
    org, run_id = started_run(api, code={"repo": "/tmp/not-a-repository", "commit": "deadbeef"})
    code = provenance(api, org, run_id)["record"]["code"]
    assert code == {
        "source": "reported",
        "repo": "/tmp/not-a-repository",
        "commit": "deadbeef",
        "dirty": None,
        "shipped": None,
    }


@pytest.fixture
def kubernetes_cluster(api: TestClient) -> Iterator[str]:
    """A Kubernetes cluster (one CPU slot), removed after the test."""
    app = app_of(api)
    name = "prov-east"
    with session_scope(app_sessionmaker(app)) as session:
        register_cluster(session, name, "kubernetes", Inventory({}, 1, 1))
    yield name
    with session_scope(app_sessionmaker(app)) as session:
        session.delete(session.get(Cluster, name))


def _launch_on(api: TestClient, run_id: str, cluster: str) -> None:
    app = app_of(api)
    with session_scope(app_sessionmaker(app)) as session:
        run = session.get(Run, run_id, with_for_update=True)
        assert run is not None
        accept_pending(session, [run_id])
        transition(session, run, RunStatus.STARTING, StatusReason.LAUNCHING, next_attempt=True)
        open_attempt(session, run, Grant(cluster, None, 0, 1), utcnow())
        freeze_and_mint_environment(session, run, run.attempt, app_settings(app))


def test_the_image_digest_the_kubelet_reported_is_observed(
    api: TestClient, kubernetes_cluster: str
) -> None:
    org = make_tenant(api)
    run_id = submit(api, org, image="registry.example.com/ml/train:v3")
    _launch_on(api, run_id, kubernetes_cluster)
    waiting = provenance(api, org, run_id)["record"]["attempts"][0]["image"]
    assert (waiting["source"], waiting["digest"]) == ("reported", None)
    digest = "registry.example.com/ml/train@sha256:" + "ab" * 32
    app = app_of(api)
    with session_scope(app_sessionmaker(app)) as session:  # as the reconciler records it
        mark_started(session, run_id, 1, "node-0", image_digest=digest)
    attempt = provenance(api, org, run_id)["record"]["attempts"][0]
    assert attempt["executor"] == "kubernetes"
    assert attempt["image"] == {"source": "observed", "used": True, "digest": digest}
    assert attempt["where"] == "node-0"


def _register(api: TestClient, run_id: str, env: dict[str, str], body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {env['TRAINPORT_RUN_TOKEN']}"}
    return api.post(f"/v1/runs/{run_id}/checkpoints", json=body, headers=headers)


def test_checkpoint_files_are_hashed_from_storage_and_marked_observed(api: TestClient) -> None:
    org = make_tenant(api)
    run_id = submit(api, org)
    env = start(api, run_id).env
    body = commit_files(env["TRAINPORT_CHECKPOINT_URI"], 10, {"model.bin": b"w" * 1000})
    assert _register(api, run_id, env, body).status_code == 201
    [checkpoint] = provenance(api, org, run_id)["record"]["checkpoints"]
    assert checkpoint["step"] == 10
    assert checkpoint["commit_sha256"]["source"] == "observed"
    assert checkpoint["files"] == {"source": "observed", "count": 1, "hashed_by_the_platform": 1}


def test_a_checkpoint_whose_stored_bytes_contradict_its_reported_digest_is_refused(
    api: TestClient,
) -> None:
    org = make_tenant(api)
    run_id = submit(api, org)
    env = start(api, run_id).env
    body = commit_files(env["TRAINPORT_CHECKPOINT_URI"], 20, {"model.bin": b"genuine"})
    stored = Path(url2pathname(urlsplit(env["TRAINPORT_CHECKPOINT_URI"]).path)) / body["path"]
    (stored / "model.bin").write_bytes(b"swapped")  # after COMMIT: the marker now lies
    refused = _register(api, run_id, env, body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "checkpoint_digest_mismatch"
    assert "model.bin" in refused.json()["detail"]
    assert provenance(api, org, run_id)["record"]["checkpoints"] == []


def test_files_past_the_hashing_budget_stay_reported(postgres_url: str, tmp_path: Path) -> None:
    with app_with(postgres_url, tmp_path, checkpoint_hash_max_bytes=10) as api:
        org: Tenant = make_tenant(api)
        run_id = submit(api, org)
        env = start(api, run_id).env
        files = {"small.json": b"{}", "model.bin": b"w" * 1000}
        body = commit_files(env["TRAINPORT_CHECKPOINT_URI"], 30, files)
        assert _register(api, run_id, env, body).status_code == 201
        [checkpoint] = provenance(api, org, run_id)["record"]["checkpoints"]
    # The small file was hashed; the large one, past the budget, is the runtime's word.
    assert checkpoint["files"] == {"source": "reported", "count": 2, "hashed_by_the_platform": 1}
