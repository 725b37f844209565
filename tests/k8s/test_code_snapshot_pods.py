"""A run that ships code, on the fake cluster: the pod the executor creates has the init
container that fetches the snapshot (with the run token, no storage credential), the `code`
emptyDir mounted at the working directory, and a relative command resolved there."""

from __future__ import annotations

import dataclasses
from typing import Any

import kubernetes_validate

from tests.k8s.cluster import ClusterSimulator
from tests.k8s.conftest import launch_request
from tests.k8s.test_manifests import SUPPORTED_VERSIONS
from workers.executors.base import CodeToRun
from workers.executors.kubernetes.executor import KubernetesExecutor
from workers.executors.kubernetes.manifests import ClusterConfig, build_attempt, to_dict

DIGEST = "sha256:" + "ab" * 32
TOKEN = "tpr_run-token-for-this-attempt-only"


def shipping(**spec: Any) -> Any:
    request = launch_request(nodes=1, command=["./train.sh", "--lr", "3e-4"], **spec)
    env = {**request.env, "TRAINPORT_RUN_TOKEN": TOKEN, "TRAINPORT_RUN_ID": request.run_id}
    code = CodeToRun(DIGEST, spec.get("working_dir"))
    return dataclasses.replace(request, env=env, code=code)


def test_the_pod_fetches_the_snapshot_into_an_empty_dir_at_the_working_directory(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    request = shipping(image="ghcr.io/acme/train:1", working_dir="src", workdir=DIGEST)
    executor.launch(request)
    cluster.step()  # the Job controller makes the pod
    [pod] = cluster.pods()
    spec = pod["spec"]
    [fetcher] = spec["initContainers"]
    [trainer] = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["code"] == {"name": "code", "emptyDir": {}}
    assert {"name": "code", "mountPath": "/code"} in fetcher["volumeMounts"]
    assert {"name": "code", "mountPath": "/code"} in trainer["volumeMounts"]
    assert trainer["workingDir"] == "/code/src"
    assert trainer["command"] == ["/code/src/train.sh", "--lr", "3e-4"]
    assert fetcher["image"] == "ghcr.io/acme/train:1"  # the run's own, unless the operator says
    assert fetcher["command"][:2] == ["python3", "-c"]
    env = {e["name"]: e.get("value") for e in fetcher["env"]}
    assert env == {
        "TRAINPORT_API_URL": "http://api",
        "TRAINPORT_RUN_ID": request.run_id,
        "TRAINPORT_RUN_TOKEN": TOKEN,
        "TRAINPORT_CODE_DIGEST": DIGEST,
        "TRAINPORT_CODE_DIR": "/code",
    }
    assert not any("valueFrom" in e for e in fetcher["env"])  # no Secret, no credential
    assert fetcher["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["automountServiceAccountToken"] is False


def test_without_code_the_pod_is_as_before() -> None:
    request = launch_request(nodes=1, image="ghcr.io/acme/train:1")
    job = to_dict(build_attempt(request, ClusterConfig()).job)
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert "workingDir" not in pod["containers"][0]


def test_the_shipping_manifest_is_valid_kubernetes() -> None:
    config = ClusterConfig(code_fetcher_image="python:3.12-slim")
    request = shipping(image="ghcr.io/acme/train:1", workdir=DIGEST)
    attempt = build_attempt(request, config)
    job = to_dict(attempt.job)
    assert job["spec"]["template"]["spec"]["initContainers"][0]["image"] == "python:3.12-slim"
    for version in SUPPORTED_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
