"""A run that ships code, on the fake cluster: the pod the executor creates has the init
container that fetches the snapshot (with the run token, no storage credential), the `code`
emptyDir mounted at the working directory, and a relative command resolved there."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import kubernetes_validate

from core.kubernetes.config import ClusterConfig
from core.kubernetes.manifests import build_attempt
from core.launch_request import CodeToRun
from tests.k8s.cluster import ClusterSimulator
from tests.k8s.test_manifests import SUPPORTED_VERSIONS
from tests.support.kubernetes import launch_request
from workers.executors.kubernetes.executor import KubernetesExecutor

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
    job = build_attempt(request, ClusterConfig()).job
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert "workingDir" not in pod["containers"][0]


def test_the_shipping_manifest_is_valid_kubernetes() -> None:
    config = ClusterConfig(code_fetcher_image="python:3.12-slim")
    request = shipping(image="ghcr.io/acme/train:1", workdir=DIGEST)
    attempt = build_attempt(request, config)
    job = attempt.job
    assert job["spec"]["template"]["spec"]["initContainers"][0]["image"] == "python:3.12-slim"
    for version in SUPPORTED_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)


def test_a_run_with_outputs_runs_inside_the_uploading_wrapper_with_no_credential(
    executor: KubernetesExecutor, cluster: ClusterSimulator
) -> None:
    """Outputs and TensorBoard files leave with the pod (core/outputs/pod_upload.py): the
    trainer's command is the wrapper's arguments, the run token is its only key, and the
    command's `$` stays literal through the kubelet's `$(VAR)` expansion."""
    request = shipping(
        image="ghcr.io/acme/train:1",
        workdir=DIGEST,
        outputs=["out/**", "final.pt"],
        metrics={"tensorboard_dir": "runs"},
    )
    request = dataclasses.replace(request, spec={**request.spec, "env": {"PRICE": "$5"}})
    executor.launch(request)
    cluster.step()
    [pod] = cluster.pods()
    [trainer] = pod["spec"]["containers"]
    assert trainer["command"][:2] == ["python3", "-c"]
    assert trainer["command"][3:] == ["/code/train.sh", "--lr", "3e-4"]
    assert "$(" not in trainer["command"][2].replace("$$", "")  # nothing the kubelet expands
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert json.loads(env["TRAINPORT_OUTPUTS"]) == ["out/**", "final.pt"]
    assert env["TRAINPORT_TENSORBOARD_DIR"] == "runs"
    assert env["TRAINPORT_RUN_TOKEN"] == TOKEN
    assert not any(word in name for name in env for word in ("SECRET", "ACCESS_KEY", "S3_", "AWS"))
    assert env["PRICE"] == "$$5"  # the kubelet hands the program "$5"
    job = build_attempt(request, ClusterConfig(default_image="t:1")).job
    for version in SUPPORTED_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)


def test_a_run_with_nothing_to_keep_runs_its_command_bare() -> None:
    request = launch_request(nodes=1, image="ghcr.io/acme/train:1", command=["python", "t.py"])
    job = build_attempt(request, ClusterConfig()).job
    [trainer] = job["spec"]["template"]["spec"]["containers"]
    assert trainer["command"] == ["python", "t.py"]
