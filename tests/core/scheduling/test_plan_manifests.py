"""`POST /v1/runs/plan` shows the manifests a Kubernetes cluster would get (issue 20): the
Indexed Job and its headless Service, rendered by the executor's own renderer with that
cluster's settings; none for a run the local executor would run. (That they are what the
executor applies, and that a real kube-apiserver accepts them, is tests/k8s_real's; that no
secret value appears, tests/security/test_secrets_plan.py's.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
from fastapi.testclient import TestClient

from core.kubernetes import naming
from core.scheduling.preflight import PLANNED_ID
from core.scheduling.preflight_manifests import MINTED_AT_LAUNCH, PACKED_AT_LAUNCH
from tests.factories import Tenant, make_tenant, run_spec
from tests.support.plans import NODES, api_with, register

NEWEST = "1.37.0"  # the README's supported range ends here (tests/k8s/test_manifests.py)


@pytest.fixture
def kube(fresh_url: str) -> Iterator[TestClient]:
    client = api_with(fresh_url)
    yield client
    client.app.state.engine.dispose()  # type: ignore[attr-defined]


def plan(client: TestClient, tenant: Tenant, **spec: Any) -> dict[str, Any]:
    response = client.post("/v1/runs/plan", json=run_spec(**spec), headers=tenant.headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {variable["name"]: variable.get("value") for variable in container["env"]}


GANG = {"nodes": 2, "gpus_per_node": 4, "gpu_type": "h100"}


def test_a_kubernetes_plan_shows_the_job_and_service_with_its_cluster_s_settings(
    kube: TestClient,
) -> None:
    register(kube, "east", "kubernetes", NODES)
    tenant = make_tenant(kube)
    answer = plan(kube, tenant, compute=GANG)
    assert answer["placement"]["cluster"] == "east"
    job, service = answer["manifests"]
    assert (job["kind"], service["kind"]) == ("Job", "Service")
    for document in (job, service):
        kubernetes_validate.validate(document, NEWEST, strict=True)
        assert document["metadata"]["namespace"] == naming.namespace_for(
            "team-{org}", tenant.org_id
        )
        assert document["metadata"]["name"] == naming.attempt_name(PLANNED_ID, 1)
        assert document["metadata"]["labels"][naming.INSTALLATION_KEY] == "plan-test"
    assert job["metadata"]["labels"][naming.QUEUE_KEY] == "east-queue"  # east's own setting
    assert job["spec"]["completions"] == 2
    assert job["spec"]["completionMode"] == "Indexed"
    env = env_of(job)
    assert env["TRAINPORT_RUN_TOKEN"] == MINTED_AT_LAUNCH
    assert env["TRAINPORT_RUN_ID"] == PLANNED_ID
    affinity = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    [term] = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    [pinned] = term["matchFields"]
    assert len(pinned["values"]) == 2
    assert set(pinned["values"]) <= set(NODES)
    assert answer["warnings"] == []


def test_a_local_executor_plan_has_no_manifests(kube: TestClient) -> None:
    register(kube, "local", "local", {"local": {"h100": 8}})
    tenant = make_tenant(kube)
    answer = plan(kube, tenant, compute={"gpus_per_node": 4, "gpu_type": "h100"})
    assert answer["placement"]["cluster"] == "local"
    assert answer["manifests"] is None


def test_a_run_not_placed_yet_is_shown_on_the_first_kubernetes_cluster_unless_local_could_take_it(
    kube: TestClient,
) -> None:
    register(kube, "west", "kubernetes", {"gpu-w": {"h100": 4}})
    register(kube, "east", "kubernetes", {"gpu-e": {"h100": 4}})
    tenant = make_tenant(kube)
    kube.put(f"/v1/orgs/{tenant.org_id}/quota", json={"max_gpus": 2}, headers=tenant.headers)
    waiting = plan(kube, tenant, compute={"gpus_per_node": 4, "gpu_type": "h100"})
    assert waiting["placement"]["reason"] == "quota_exhausted"
    [job, _] = waiting["manifests"]
    assert job["metadata"]["namespace"].startswith("team-")  # east: first by name
    assert "may go to west" in " ".join(waiting["warnings"])
    register(kube, "local", "local", {"local": {"h100": 4}})
    assert plan(kube, tenant, compute={"gpus_per_node": 4})["manifests"] is None


def test_a_git_run_s_snapshot_is_a_placeholder_and_a_workdir_run_s_its_digest(
    kube: TestClient,
) -> None:
    register(kube, "west", "kubernetes", NODES)
    tenant = make_tenant(kube)
    git = {"url": "https://example.com/acme/train.git", "ref": "main"}
    answer = plan(kube, tenant, git=git, working_dir="src", command=["python", "train.py"])
    [job, _] = answer["manifests"]
    pod = job["spec"]["template"]["spec"]
    [fetcher] = pod["initContainers"]
    fetched = {variable["name"]: variable["value"] for variable in fetcher["env"]}
    assert fetched["TRAINPORT_CODE_DIGEST"] == PACKED_AT_LAUNCH
    assert fetched["TRAINPORT_RUN_TOKEN"] == MINTED_AT_LAUNCH
    assert pod["containers"][0]["workingDir"] == "/code/src"
    assert pod["containers"][0]["image"] == "python:3.11-slim"  # the run's own image


def test_a_launch_that_would_be_refused_shows_no_manifests_and_says_why(
    fresh_url: str,
) -> None:
    client = api_with(fresh_url, kubernetes_default_image=None)
    try:
        register(client, "east", "kubernetes", NODES)
        tenant = make_tenant(client)
        unset = plan(client, tenant, env={"TOKEN": {"secret": "not-set"}})
        assert unset["manifests"] is None
        assert any("needs secret 'not-set'" in warning for warning in unset["warnings"])
        bare = {"command": ["python", "train.py"]}  # no image, and east has no default
        imageless = client.post("/v1/runs/plan", json=bare, headers=tenant.headers).json()
        assert imageless["manifests"] is None
        assert any("east would refuse it" in warning for warning in imageless["warnings"])
    finally:
        client.app.state.engine.dispose()  # type: ignore[attr-defined]
