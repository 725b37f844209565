"""On Kubernetes, each org's runs read their secrets from that org's own Secret (issue 12).

Before: every pod's `secretKeyRef` named one Secret shared by all orgs. Now the worker writes
the values it resolved for a launch into `trainport-secrets-<org>` in the training namespace,
pods refer to keys of their own org's Secret only, no value appears in any rendered Job or Pod,
and a pod's log line holding its secret is stored redacted. The real executor and client run
against the fake API server over HTTP, with the simulator playing the cluster.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from core.kubernetes import naming
from core.launch_request import LaunchRequest
from core.secrets.schemas import LaunchSecrets
from core.secrets.service import store_key
from tests.factories import read_log
from tests.k8s.cluster import ClusterSimulator
from tests.support.kubernetes import (  # noqa: F401 - fixtures
    NAMESPACE,
    clock,
    cluster,
    executor,
    make_executor,
    outcome_after,
    server,
)
from tests.support.secrets import canary
from workers.executors.kubernetes.executor import KubernetesExecutor

ORG_A, ORG_B = "org_01jd5xaaaaaaaaaaaaaaaaaaaa", "org_01jd5xbbbbbbbbbbbbbbbbbbbb"


def secret_request(
    org_id: str, values: dict[str, str], project_id: str = "", live: frozenset[str] | None = None
) -> LaunchRequest:
    """A launch whose env names `values`' secrets, resolved as the reconciler does."""
    env = {name.upper().replace("-", "_"): {"secret": name} for name in values}
    spec = {"command": ["python", "train.py"], "compute": {"nodes": 1}, "env": env}
    keys = {name: store_key(project_id, name) for name in values}
    run_id = f"run_{os.urandom(8).hex()}"
    return LaunchRequest(
        run_id, org_id, 1, spec, {"TRAINPORT_API_URL": "http://api"}, project_id,
        LaunchSecrets(dict(values), keys, live),
    )  # fmt: skip


def org_secret(sim: ClusterSimulator, org_id: str) -> dict[str, str]:
    url = f"/api/v1/namespaces/{NAMESPACE}/secrets/{naming.org_secret_name(org_id)}"
    response = sim.http.get(url)
    assert response.status_code == 200, response.text
    data: dict[str, str] = response.json().get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def secret_refs(sim: ClusterSimulator) -> dict[str, set[str]]:
    """Each Job's run id -> the Secret names its pods' `secretKeyRef`s point at."""
    found: dict[str, set[str]] = {}
    for job in sim.jobs():
        container = job["spec"]["template"]["spec"]["containers"][0]
        refs = {
            variable["valueFrom"]["secretKeyRef"]["name"]
            for variable in container["env"]
            if "secretKeyRef" in (variable.get("valueFrom") or {})
        }
        found[job["metadata"]["annotations"][naming.RUN_ID_KEY]] = refs
    return found


def everything_rendered(sim: ClusterSimulator) -> str:
    objects: list[Any] = [*sim.jobs(), *sim.pods()]
    services = sim.http.get(f"/api/v1/namespaces/{NAMESPACE}/services").json()["items"]
    return json.dumps(objects + services)


def test_each_org_gets_its_own_secret_and_its_pods_refer_only_to_it(
    executor: KubernetesExecutor,  # noqa: F811
    cluster: ClusterSimulator,  # noqa: F811
) -> None:
    value_a, value_b = canary(), canary()
    run_a = secret_request(ORG_A, {"wandb": value_a})
    run_b = secret_request(ORG_B, {"wandb": value_b})
    executor.launch(run_a)
    executor.launch(run_b)
    cluster.step()
    assert org_secret(cluster, ORG_A) == {"org.wandb": value_a}
    assert org_secret(cluster, ORG_B) == {"org.wandb": value_b}
    assert secret_refs(cluster) == {
        run_a.run_id: {naming.org_secret_name(ORG_A)},
        run_b.run_id: {naming.org_secret_name(ORG_B)},
    }
    rendered = everything_rendered(cluster)
    assert value_a not in rendered
    assert value_b not in rendered


def test_a_later_launch_merges_rotated_and_project_values_into_the_org_secret(
    executor: KubernetesExecutor,  # noqa: F811
    cluster: ClusterSimulator,  # noqa: F811
) -> None:
    first, rotated, for_lab = canary(), canary(), canary()
    executor.launch(secret_request(ORG_A, {"wandb": first}))
    executor.launch(secret_request(ORG_A, {"wandb": rotated}))
    executor.launch(secret_request(ORG_A, {"wandb": for_lab}, project_id="prj_lab"))
    assert org_secret(cluster, ORG_A) == {"org.wandb": rotated, "prj_lab.wandb": for_lab}
    lab_job = next(j for j in cluster.jobs() if "prj_lab" in json.dumps(j["spec"]))
    env = lab_job["spec"]["template"]["spec"]["containers"][0]["env"]
    [ref] = [v["valueFrom"]["secretKeyRef"] for v in env if v["name"] == "WANDB"]
    assert ref == {"name": naming.org_secret_name(ORG_A), "key": "prj_lab.wandb"}


def test_a_secret_the_org_deleted_leaves_its_secret_at_the_next_launch(
    executor: KubernetesExecutor,  # noqa: F811
    cluster: ClusterSimulator,  # noqa: F811
) -> None:
    executor.launch(secret_request(ORG_A, {"wandb": canary(), "hf-token": canary()}))
    assert set(org_secret(cluster, ORG_A)) == {"org.wandb", "org.hf-token"}
    kept = canary()
    executor.launch(secret_request(ORG_A, {"wandb": kept}, live=frozenset({"org.wandb"})))
    assert org_secret(cluster, ORG_A) == {"org.wandb": kept}


def test_a_pod_log_line_holding_its_secret_is_stored_redacted(
    executor: KubernetesExecutor,  # noqa: F811
    cluster: ClusterSimulator,  # noqa: F811
) -> None:
    value = canary()
    request = secret_request(ORG_A, {"wandb": value})
    executor.launch(request)
    cluster.step()
    cluster.step()
    outcome_after(executor, request, "running")
    [pod] = cluster.pods()
    cluster.server.append_log(NAMESPACE, pod["metadata"]["name"], f"my key is {value}!")
    cluster.fates[0] = "succeed"
    for _ in range(3):
        cluster.step()
    outcome_after(executor, request, "succeeded")
    executor.cleanup(request.run_id, request.attempt)
    stored = read_log(executor.logs._archive, request.run_id, 1, 0)
    assert "my key is ***!" in stored
    assert value not in stored
