"""Every manifest the executor builds is valid Kubernetes, for the oldest and newest supported
minor version, and obeys the rules the schemas cannot express; no user string escapes its field.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.kubernetes import naming
from core.kubernetes.config import ClusterConfig
from core.kubernetes.manifests import UPLOAD_PROGRAM, ManifestRefused, build_attempt, literal
from core.launch_request import LaunchRequest
from core.runs.spec import RunSpec
from core.secrets.schemas import LaunchSecrets
from core.secrets.service import secret_names, store_key


def trainer_command(container: dict[str, Any]) -> list[str]:
    """The run's own command: with a checkpoint volume (CONFIG's) a command runs inside the
    wrapper that uploads what the attempt leaves (core/outputs/pod_upload.py)."""
    command: list[str] = container["command"]
    if command[:3] == ["python3", "-c", literal(UPLOAD_PROGRAM)]:
        return command[3:]
    return command


# The README's "Run on Kubernetes" section states this range.
SUPPORTED_VERSIONS = ("1.31.0", "1.37.0")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?)?$")
QUANTITY = re.compile(r"^(\d+(\.\d+)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
CONFIG = ClusterConfig(
    default_image="python:3.11-slim",
    tolerations=({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},),
    image_pull_secrets=("registry",),
    priority_classes={"high": "trainport-high"},
    queue_name="team-a",
    checkpoint_claim="checkpoints",
)
HOSTILE = ["a\nb", "---\nkind: Pod", 'x": "y', "$(MASTER_ADDR)", "'; rm -rf /", "$$(A)", "é\t"]


def request(spec: dict[str, Any], run_id: str = "run_01jd5xabcdefghjkmnpqrstvwx") -> LaunchRequest:
    validated = RunSpec.model_validate(spec).model_dump(mode="json")
    names = set(secret_names(validated).values())  # resolved as the reconciler would
    secrets = LaunchSecrets(
        {name: f"value-of-{name}" for name in names}, {name: store_key("", name) for name in names}
    )
    env = {"TRAINPORT_API_URL": "http://api"}
    return LaunchRequest(run_id, "org_01jd5x", 1, validated, env, secrets=secrets)


FULL_SPEC = {
    "image": "ghcr.io/acme/train:1",
    "command": ["torchrun", "--nnodes=$(NNODES)", "train.py"],
    "env": {"LR": "0.1", "TOKEN": {"secret": "hf-token"}},
    "compute": {
        "nodes": 4,
        "gpus_per_node": 8,
        "gpu_type": "a100",
        "cpus": "32",
        "memory": "200Gi",
    },
    "scheduling": {"priority": "high", "max_duration": "12h"},
    "labels": {"team": "nlp", "kueue.x-k8s.io/queue-name": "stolen"},
}


def documents(
    spec: dict[str, Any], run_id: str = "run_01jd5xabcdefghjkmnpqrstvwx"
) -> list[dict[str, Any]]:
    built = build_attempt(request(spec, run_id), CONFIG)
    return [built.job, built.service]


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_the_job_and_service_validate_strictly(version: str) -> None:
    for document in documents(FULL_SPEC):
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_a_placed_gang_is_pinned_to_its_nodes_by_name(version: str) -> None:
    placed = dataclasses.replace(request(FULL_SPEC), nodes=("gpu-a", "gpu-b", "gpu-c", "gpu-d"))
    job = build_attempt(placed, CONFIG).job
    kubernetes_validate.validate(job, version, strict=True)
    affinity = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    [term] = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == {
        "matchFields": [
            {
                "key": "metadata.name",
                "operator": "In",
                "values": ["gpu-a", "gpu-b", "gpu-c", "gpu-d"],
            }
        ]
    }
    assert "affinity" not in documents(FULL_SPEC)[0]["spec"]["template"]["spec"]


def test_names_fit_63_characters_including_pod_hostnames() -> None:
    job, service = documents(FULL_SPEC, run_id="r" * 64)
    name = job["metadata"]["name"]
    assert DNS_LABEL.fullmatch(name)
    assert name == service["metadata"]["name"]
    assert len(f"{name}-{job['spec']['completions'] - 1}") <= 63
    assert len(naming.pod_hostname("r" * 64, 999, 511)) <= 63


def test_labels_and_quantities_follow_their_syntax() -> None:
    job, service = documents(FULL_SPEC)
    pod = job["spec"]["template"]
    for meta in (job["metadata"], service["metadata"], pod["metadata"]):
        for key, value in meta["labels"].items():
            assert len(key.rpartition("/")[2]) <= 63, key
            assert LABEL_VALUE.fullmatch(value), key
    resources = pod["spec"]["containers"][0]["resources"]
    for amounts in resources.values():
        assert all(QUANTITY.fullmatch(v) and isinstance(v, str) for v in amounts.values())
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "8"


def test_the_service_selects_the_pods_and_names_their_subdomain() -> None:
    job, service = documents(FULL_SPEC)
    pod = job["spec"]["template"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["subdomain"] == service["metadata"]["name"]
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert (
        env["MASTER_ADDR"]["value"] == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    )
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert env["WORLD_SIZE"]["value"] == "32"


def test_the_job_is_a_gang_that_trainport_retries() -> None:
    job = documents(FULL_SPEC)[0]
    spec = job["spec"]
    assert spec["completions"] == spec["parallelism"] == 4
    assert spec["completionMode"] == "Indexed"
    assert spec["backoffLimit"] == 0
    assert spec["podReplacementPolicy"] == "Failed"
    # The Job's deadline would count time spent pending; the reconciler enforces max_duration.
    assert "activeDeadlineSeconds" not in spec
    assert spec["podFailurePolicy"]["rules"][0]["action"] == "Ignore"
    assert job["metadata"]["labels"][naming.QUEUE_KEY] == "team-a"  # not the user's label


def test_the_pod_is_restricted_and_secrets_stay_references() -> None:
    pod = documents(FULL_SPEC)[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    token = next(e for e in container["env"] if e["name"] == "TOKEN")
    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"] == {
        "name": "trainport-secrets-org-01jd5x",
        "key": "org.hf-token",
    }
    assert "value-of-hf-token" not in json.dumps(documents(FULL_SPEC))
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "200Gi"}} in pod[
        "volumes"
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "a100"}


def test_a_run_without_an_image_on_a_cluster_without_a_default_is_refused() -> None:
    with pytest.raises(ManifestRefused):
        build_attempt(request({"command": ["x"]}), dataclasses.replace(CONFIG, default_image=None))


def test_a_recipe_run_becomes_its_entry_point_with_its_parameters() -> None:
    spec = {"recipe": "lm", "parameters": {"steps": 10}}
    container = build_attempt(request(spec), CONFIG).job["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert container["command"] == ["python", "-m", "trainport.recipes.lm"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert json.loads(env["TRAINPORT_PARAMETERS"]) == {"steps": 10}


# -- property: random valid specs, hostile strings included --------------------------------------

printable = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
text = st.one_of(st.sampled_from(HOSTILE), st.text(printable, min_size=1, max_size=40))
env_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: (
        not n.startswith(("TRAINPORT_", "KUBERNETES_"))
        and n
        not in {
            "RANK",
            "LOCAL_RANK",
            "WORLD_SIZE",
            "MASTER_ADDR",
            "MASTER_PORT",
            "NODE_RANK",
            "NNODES",
        }
    )
)
specs = st.fixed_dictionaries(
    {
        "image": text,
        "command": st.lists(text, min_size=1, max_size=4),
        "env": st.dictionaries(env_names, text, max_size=4),
        "compute": st.fixed_dictionaries(
            {"nodes": st.integers(1, 512), "gpus_per_node": st.integers(0, 16)},
            optional={
                "gpu_type": st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
            },
        ),
        "scheduling": st.fixed_dictionaries(
            {"priority": st.sampled_from(["low", "normal", "high"])},
            optional={"max_duration": st.integers(1, 30 * 86400)},
        ),
    }
)
run_ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


def strings_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {s for v in value.values() for s in strings_in(v)} | {str(k) for k in value}
    if isinstance(value, list):
        return {s for v in value for s in strings_in(v)}
    return {value} if isinstance(value, str) else set()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, run_id=run_ids)
def test_any_valid_spec_renders_valid_objects_holding_only_what_it_derives(
    spec: dict[str, Any], run_id: str
) -> None:
    job, service = documents(spec, run_id)
    for document in (job, service):
        kubernetes_validate.validate(document, SUPPORTED_VERSIONS[-1], strict=True)
        assert json.loads(json.dumps(document)) == document
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert trainer_command(container) == [literal(part) for part in spec["command"]]
    assert container["image"] == spec["image"]
    user_values = {e["name"]: e["value"] for e in container["env"] if e["name"] in spec["env"]}
    assert user_values == {k: literal(v) for k, v in spec["env"].items()}
    assert set(job) == {"apiVersion", "kind", "metadata", "spec"}
    assert job["kind"] == "Job"
    assert service["kind"] == "Service"
    derived = strings_in(spec) | {literal(s) for s in strings_in(spec)}
    derived.add(literal(UPLOAD_PROGRAM))  # the platform's own program, not the user's text
    for value in strings_in(job) | strings_in(service):
        if any(h in value for h in ("\n", "---", "$(")):
            assert value in derived or value.startswith("metadata.annotations"), value
