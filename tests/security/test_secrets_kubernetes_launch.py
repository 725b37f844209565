"""The launch path on Kubernetes: the worker resolves each run's own org's values from the
database and writes them into that org's Secret on the cluster the run landed on (issue 12).

The real scheduler, `launch_attempt` and the Kubernetes executor, against fake API servers
reached through kubeconfig files (tests/support/kubernetes_clusters.py's fixtures).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from fastapi.testclient import TestClient

from core.kubernetes import naming
from tests.factories import Tenant, create_run, make_tenant
from tests.support.kubernetes_clusters import (  # noqa: F401 - fixtures, used as arguments
    H100,
    NAMESPACE,
    Clusters,
    admit_and_launch,
    api,
    clusters,
    context,
)
from tests.support.secrets import canary, set_secret
from workers import scheduler
from workers.reconciler import launch_attempt


def _secret_run(client: TestClient, tenant: Tenant) -> str:
    compute = {"nodes": 1, "gpus_per_node": 4, "gpu_type": H100}
    env = {"WANDB_API_KEY": {"secret": "wandb"}}
    run: dict[str, Any] = create_run(client, tenant, compute=compute, env=env)
    return str(run["id"])


def _org_secret(sim: Any, org_id: str) -> dict[str, str]:
    url = f"/api/v1/namespaces/{NAMESPACE}/secrets/{naming.org_secret_name(org_id)}"
    data = sim.http.get(url).json().get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def test_each_orgs_launch_writes_only_its_own_value_to_its_own_secret(
    api: TestClient,  # noqa: F811
    clusters: Clusters,  # noqa: F811
) -> None:
    ctx = context(api, clusters.settings)
    org_a, org_b = make_tenant(api), make_tenant(api)
    value_a, value_b = canary(), canary()
    set_secret(api, org_a, "wandb", value_a)
    set_secret(api, org_b, "wandb", value_b)
    for tenant in (org_a, org_b):
        admit_and_launch(api, ctx, _secret_run(api, tenant))
    assert _org_secret(clusters.west, org_a.org_id) == {"org.wandb": value_a}
    assert _org_secret(clusters.west, org_b.org_id) == {"org.wandb": value_b}
    for job in clusters.west.jobs():
        org = job["metadata"]["labels"][naming.ORG_KEY]
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        [ref] = [v["valueFrom"]["secretKeyRef"] for v in env if v["name"] == "WANDB_API_KEY"]
        assert ref["name"] == naming.org_secret_name(org)
    rendered = json.dumps(clusters.west.jobs() + clusters.west.pods())
    assert value_a not in rendered
    assert value_b not in rendered


def test_a_run_naming_another_orgs_secret_fails_before_reaching_the_cluster(
    api: TestClient,  # noqa: F811
    clusters: Clusters,  # noqa: F811
) -> None:
    ctx = context(api, clusters.settings)
    org_a, org_b = make_tenant(api), make_tenant(api)
    set_secret(api, org_a, "wandb", canary())
    run_id = _secret_run(api, org_b)
    [admitted] = scheduler.run_pass(ctx.factory, ctx.settings, [run_id]).admitted
    assert launch_attempt(ctx, run_id, admitted.attempt) == "refused"
    run = api.get(f"/v1/runs/{run_id}", headers=org_b.headers).json()
    assert (run["status"], run["status_reason"]) == ("failed", "system_error")
    assert "needs secret 'wandb'" in run["status_message"]
    assert clusters.west.jobs() == []
    assert clusters.west.http.get(f"/api/v1/namespaces/{NAMESPACE}/secrets").json()["items"] == []


def test_a_deleted_secret_leaves_the_orgs_secret_at_its_next_launch(
    api: TestClient,  # noqa: F811
    clusters: Clusters,  # noqa: F811
) -> None:
    ctx = context(api, clusters.settings)
    org = make_tenant(api)
    set_secret(api, org, "wandb", canary())
    set_secret(api, org, "hf-token", canary())
    both = {"WANDB_API_KEY": {"secret": "wandb"}, "HF_TOKEN": {"secret": "hf-token"}}
    compute = {"nodes": 1, "gpus_per_node": 4, "gpu_type": H100}
    admit_and_launch(api, ctx, create_run(api, org, compute=compute, env=both)["id"])
    assert set(_org_secret(clusters.west, org.org_id)) == {"org.wandb", "org.hf-token"}
    assert api.delete("/v1/secrets/hf-token", headers=org.headers).status_code == 204
    admit_and_launch(api, ctx, _secret_run(api, org))
    assert set(_org_secret(clusters.west, org.org_id)) == {"org.wandb"}
