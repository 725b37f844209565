"""What one attempt becomes on Kubernetes: a headless Service and an Indexed Job, as JSON.

Rendered from the validated run spec as plain dicts in the API's own shape (camelCase keys, no
null fields: what the official client's `sanitize_for_serialization` makes of its models) —
never by templating YAML — so a user's string (a newline, `---`, a quote) is only ever a string
value in one field. Every `$` in a user's command or env value is doubled, because the kubelet
expands `$(VAR)` there; `$$` is how Kubernetes spells a literal `$`, so the program sees exactly
what the user wrote. The Kubernetes executor sends these dicts as request bodies, and
`POST /v1/runs/plan` shows them (core/scheduling/preflight.py).

The Job: completions = parallelism = nodes, `backoffLimit: 0` (Trainport owns retries), a
podFailurePolicy that ignores disruptions (Trainport classifies them as system failures) and
fails fast on exit codes that can never succeed, `podReplacementPolicy: Failed`,
`ttlSecondsAfterFinished`. No `activeDeadlineSeconds`: it counts from the Job's start, time
spent pending included, so the reconciler enforces `scheduling.max_duration` on running time
instead (core/runs/time_limits.py). The pod runs
at the "restricted" Pod Security level, mounts no service account token, reads secrets only
through `secretKeyRef` to its own org's Secret (`naming.org_secret_name`, the keys resolved at
launch: `LaunchRequest.secrets`), and finds rank 0 at `<job>-0.<service>`. The Service is owned
by its Job (`ownerReferences`, set at launch once the Job has a uid: `owned_by`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.code import fetch
from core.kubernetes import naming
from core.kubernetes.config import ClusterConfig
from core.launch_request import LaunchRequest, resolve_command
from core.outputs import pod_upload
from core.runs.launcher import Launcher, launcher_of, nodes, ranks_per_node, torchrun_prefix
from core.runs.recipes import launch_command, recipe_environment

Manifest = dict[str, Any]  # one object as the API server receives it
CONTAINER = "trainer"
CHECKPOINT_DIR = "/checkpoints"
CODE_DIR = "/code"  # the run's code snapshot, unpacked by the init container
CODE_FETCHER = "code"
FETCH_PROGRAM = Path(fetch.__file__).read_text()  # stdlib only: runs on any Python 3.9+ image
UPLOAD_PROGRAM = Path(pod_upload.__file__).read_text()  # the same: the trainer's wrapper
NEVER_SUCCEEDS = [126, 127]  # not executable / command not found: a retry cannot help
IMAGE_PULL_POLICY = "IfNotPresent"


class ManifestRefused(ValueError):
    """The spec cannot become a pod on this cluster (no image, a recipe, an invalid selector)."""


@dataclass(frozen=True)
class AttemptManifests:
    namespace: str
    name: str
    job: Manifest
    service: Manifest
    spec_hash: str


def build_attempt(request: LaunchRequest, config: ClusterConfig) -> AttemptManifests:
    """The Job and its Service for one attempt; the Service's owner reference is set at launch."""
    _check_launchable(request.spec, config)
    namespace = naming.namespace_for(config.namespace, request.org_id)
    name = naming.attempt_name(request.run_id, request.attempt)
    job = build_job_manifest(request, config, namespace)
    service = build_service_manifest(request, config, namespace)
    digest = spec_hash(job, service)
    for target in (job, service):
        target["metadata"]["annotations"][naming.SPEC_HASH_KEY] = digest
    return AttemptManifests(namespace, name, job, service, digest)


def spec_hash(job: Manifest, service: Manifest) -> str:
    """A digest of what was asked for, before the hash itself is written into the objects."""
    canonical = json.dumps([job, service], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def owned_by(service: Manifest, job_name: str, job_uid: str) -> Manifest:
    """`service` owned by its Job (the garbage collector deletes it with the Job)."""
    owner = {
        "apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job_uid,
        "blockOwnerDeletion": True,
    }  # fmt: skip
    return {**service, "metadata": {**service["metadata"], "ownerReferences": [owner]}}


def _check_launchable(spec: dict[str, Any], config: ClusterConfig) -> None:
    if not (spec.get("image") or config.default_image):
        raise ManifestRefused("the run names no image and the cluster has no default image")
    gpu_type = (spec.get("compute") or {}).get("gpu_type")
    if gpu_type and naming.label_value(gpu_type) != gpu_type:
        raise ManifestRefused(f"gpu_type {gpu_type!r} is not a valid node label value")


def _metadata(
    request: LaunchRequest, config: ClusterConfig, name: str | None, namespace: str | None
) -> Manifest:
    labels = {
        key: value
        for key, value in (request.spec.get("labels") or {}).items()
        if naming.is_user_label_allowed(key)
    }
    labels.update(
        naming.attempt_labels(
            request.run_id, request.org_id, request.project_id, request.attempt, config.installation
        )
    )
    annotations = {naming.RUN_ID_KEY: request.run_id}
    named = {"name": name, "namespace": namespace} if name and namespace else {}
    return {**named, "labels": labels, "annotations": annotations}


def build_service_manifest(
    request: LaunchRequest, config: ClusterConfig, namespace: str
) -> Manifest:
    """Headless, publishing not-ready pods: rank 0 must resolve before any rank is ready."""
    name = naming.attempt_name(request.run_id, request.attempt)
    port = {"name": "rendezvous", "port": config.rendezvous_port, "protocol": "TCP"}
    spec = {
        "clusterIP": "None",
        "publishNotReadyAddresses": True,
        "selector": naming.selector_labels(request.run_id, request.attempt, config.installation),
        "ports": [port],
    }
    metadata = _metadata(request, config, name, namespace)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def build_job_manifest(request: LaunchRequest, config: ClusterConfig, namespace: str) -> Manifest:
    name = naming.attempt_name(request.run_id, request.attempt)
    completions = nodes(request.spec)
    metadata = _metadata(request, config, name, namespace)
    if config.queue_name:
        metadata["labels"][naming.QUEUE_KEY] = config.queue_name
    spec = {
        "completions": completions,
        "parallelism": completions,
        "completionMode": "Indexed",
        "backoffLimit": 0,
        "podFailurePolicy": _pod_failure_policy(),
        "podReplacementPolicy": "Failed",
        "ttlSecondsAfterFinished": config.ttl_seconds_after_finished,
        "template": _pod_template(request, config),
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _pod_failure_policy() -> Manifest:
    disrupted = {"type": "DisruptionTarget", "status": "True"}
    hopeless = {"containerName": CONTAINER, "operator": "In", "values": list(NEVER_SUCCEEDS)}
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [disrupted]},
            {"action": "FailJob", "onExitCodes": hopeless},
        ]
    }


def _pod_template(request: LaunchRequest, config: ClusterConfig) -> Manifest:
    spec = request.spec
    gpu_type = (spec.get("compute") or {}).get("gpu_type")
    priority = (spec.get("scheduling") or {}).get("priority") or "normal"
    pod = {
        "restartPolicy": "Never",
        "subdomain": naming.attempt_name(request.run_id, request.attempt),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no Service variables beside the user's env
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [_code_fetcher(request, config)] if request.code else None,
        "containers": [_container(request, config)],
        "volumes": _volumes(request, config),
        "nodeSelector": {config.gpu_type_label: gpu_type} if gpu_type else None,
        # The operator's tolerations as written (`key`, `operator`, `value`, `effect`).
        "tolerations": [dict(t) for t in config.tolerations] or None,
        "imagePullSecrets": [{"name": s} for s in config.image_pull_secrets] or None,
        "priorityClassName": config.priority_classes.get(str(priority)),
        "affinity": _placed_on(request.nodes),
    }
    return {"metadata": _metadata(request, config, None, None), "spec": _present(pod)}


def _present(fields: Manifest) -> Manifest:
    """`fields` without the unset ones: the API's JSON has no nulls."""
    return {key: value for key, value in fields.items() if value is not None}


def container_command(spec: dict[str, Any], cwd: str | None = None) -> list[str]:
    """The container's command: the run's own (a relative program resolved in the working
    directory `cwd`, each `$` escaped), inside torchrun when that is its launcher; torchrun's
    arguments are the only `$(VAR)`s the kubelet expands."""
    command = launch_command(spec, "python")
    command = [literal(part) for part in (resolve_command(command, cwd) if cwd else command)]
    if launcher_of(spec) is not Launcher.TORCHRUN:
        return command
    master = ("$(MASTER_ADDR)", "$(MASTER_PORT)")
    return [*torchrun_prefix(spec, command, "$(NODE_RANK)", master), *command]


def keeps_leftovers(spec: dict[str, Any], config: ClusterConfig) -> bool:
    """Whether the pod uploads what its attempt leaves (core/outputs/pod_upload.py): when the
    run has `outputs`, a `metrics.tensorboard_dir`, or runs its own command with a checkpoint
    volume to look through (a recipe checkpoints through the runtime, which registers its
    own)."""
    tensorboard = (spec.get("metrics") or {}).get("tensorboard_dir")
    loose = bool(config.checkpoint_claim and spec.get("command"))
    return bool(spec.get("outputs") or tensorboard or loose)


def wrapped_command(request: LaunchRequest, config: ClusterConfig) -> list[str]:
    """The container's command, inside the uploading wrapper when the pod keeps leftovers."""
    command = container_command(request.spec, working_dir(request))
    if not keeps_leftovers(request.spec, config):
        return command
    return ["python3", "-c", literal(UPLOAD_PROGRAM), *command]


def _placed_on(nodes: tuple[str, ...]) -> Manifest | None:
    """Only the nodes the scheduler's node-shaped fit chose (by node name, which a label might
    not match): the gang runs where Trainport counted its GPUs free."""
    if not nodes:
        return None
    names = {"key": "metadata.name", "operator": "In", "values": list(nodes)}
    required = {"nodeSelectorTerms": [{"matchFields": [names]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}


def _container(request: LaunchRequest, config: ClusterConfig) -> Manifest:
    cwd = working_dir(request)
    command = wrapped_command(request, config)
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]  # noqa: S108 - shared memory
    if config.checkpoint_claim:
        mounts.append(
            {"name": "checkpoints", "mountPath": CHECKPOINT_DIR, "subPath": request.run_id}
        )
    if request.code:
        mounts.append({"name": "code", "mountPath": CODE_DIR})
    container = {
        "name": CONTAINER,
        "image": request.spec.get("image") or config.default_image,
        "imagePullPolicy": IMAGE_PULL_POLICY,
        "command": command,  # escaped by container_command
        "workingDir": cwd,
        "env": _env(request, config),
        "resources": _resources(request.spec.get("compute") or {}, config),
        "volumeMounts": mounts,
        "securityContext": _restricted(),
    }
    return _present(container)


def _restricted() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def working_dir(request: LaunchRequest) -> str | None:
    """Where the trainer starts: `working_dir` inside the unpacked code, else its root; the
    image's own working directory when the run ships no code."""
    if request.code is None:
        return None
    inside = request.code.working_dir
    return f"{CODE_DIR}/{inside}" if inside else CODE_DIR


def _code_fetcher(request: LaunchRequest, config: ClusterConfig) -> Manifest:
    """Fetches the run's snapshot into the `code` emptyDir before the trainer starts: a
    presigned URL asked for with the run token (core/code/fetch.py), no storage credential."""
    assert request.code is not None
    wanted = ("TRAINPORT_API_URL", "TRAINPORT_RUN_ID", "TRAINPORT_RUN_TOKEN")
    values = {name: request.env[name] for name in wanted if name in request.env}
    values["TRAINPORT_RUN_ID"] = request.run_id
    values |= {"TRAINPORT_CODE_DIGEST": request.code.digest, "TRAINPORT_CODE_DIR": CODE_DIR}
    return {
        "name": CODE_FETCHER,
        "image": config.code_fetcher_image or request.spec.get("image") or config.default_image,
        "imagePullPolicy": IMAGE_PULL_POLICY,
        "command": ["python3", "-c", literal(FETCH_PROGRAM)],
        "env": [{"name": name, "value": literal(value)} for name, value in values.items()],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "volumeMounts": [{"name": "code", "mountPath": CODE_DIR}],
        "securityContext": _restricted(),
    }


def literal(text: str) -> str:
    """`text` as the kubelet will hand it over: `$(VAR)` must not expand, so `$` becomes `$$`."""
    return text.replace("$", "$$")


def _resources(compute: dict[str, Any], config: ClusterConfig) -> Manifest:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if compute.get("cpus"):
        requests["cpu"] = str(compute["cpus"])
    if compute.get("memory"):
        requests["memory"] = limits["memory"] = str(compute["memory"])
    gpus = int(compute.get("gpus_per_node") or 0)
    if gpus:
        requests[config.gpu_resource] = limits[config.gpu_resource] = str(gpus)
    return _present({"requests": requests or None, "limits": limits or None})


def _volumes(request: LaunchRequest, config: ClusterConfig) -> list[Manifest]:
    memory = (request.spec.get("compute") or {}).get("memory")
    shm = _present({"medium": "Memory", "sizeLimit": str(memory) if memory else None})
    volumes: list[Manifest] = [{"name": "dshm", "emptyDir": shm}]
    if request.code:
        volumes.append({"name": "code", "emptyDir": {}})
    if config.checkpoint_claim:
        claim = {"claimName": config.checkpoint_claim}
        volumes.append({"name": "checkpoints", "persistentVolumeClaim": claim})
    return volumes


def distributed_environment(request: LaunchRequest, config: ClusterConfig) -> dict[str, str]:
    """The distributed variables of the run's launcher (core/runs/launcher.py): `none` gets
    none; `torchrun` the ones its arguments name (it gives its ranks RANK, WORLD_SIZE, ...);
    `env` those and WORLD_SIZE. NODE_RANK, from the completion index, is added by `_env`."""
    launcher = launcher_of(request.spec)
    if launcher is Launcher.NONE:
        return {}
    count, per_node = nodes(request.spec), ranks_per_node(request.spec)
    env = {
        "MASTER_ADDR": naming.master_address(request.run_id, request.attempt),
        "MASTER_PORT": str(config.rendezvous_port),
        "NNODES": str(count),
        "NPROC_PER_NODE": str(per_node),
    }
    if launcher is Launcher.ENV:
        env["WORLD_SIZE"] = str(count * per_node)
    return env


def rank_environment(request: LaunchRequest, config: ClusterConfig) -> dict[str, str]:
    """The platform's variables every pod gets."""
    env = dict(request.env)
    env.update(distributed_environment(request, config))
    env["TRAINPORT_RUN_ID"] = request.run_id
    env["TRAINPORT_ATTEMPT"] = str(request.attempt)
    if config.checkpoint_claim:
        env["TRAINPORT_CHECKPOINT_DIR"] = CHECKPOINT_DIR
    if request.spec.get("outputs"):
        env["TRAINPORT_OUTPUTS"] = json.dumps(request.spec["outputs"])
    if tensorboard := (request.spec.get("metrics") or {}).get("tensorboard_dir"):
        env["TRAINPORT_TENSORBOARD_DIR"] = tensorboard
    return env


def _secret_ref(request: LaunchRequest, variable: str, secret: str) -> Manifest:
    """A reference into the run's own org's Secret; never a value in the manifest."""
    key = request.secrets.keys.get(secret)
    if key is None:  # the reconciler resolves every name first; this request was built elsewhere
        raise ManifestRefused(
            f"env {variable} needs secret {secret!r}, which was not resolved for this launch"
        )
    return {"name": naming.org_secret_name(request.org_id), "key": key}


def build_org_secret(request: LaunchRequest, config: ClusterConfig, namespace: str) -> Manifest:
    """The launch's resolved values as its org's Secret (merged into what the org has there)."""
    data = {
        key: base64.b64encode(value.encode()).decode("ascii")
        for key, value in request.secrets.store().items()
    }
    return org_secret(request.org_id, config, namespace, data)


def org_secret(
    org_id: str, config: ClusterConfig, namespace: str, data: dict[str, str]
) -> Manifest:
    """The org's Secret holding `data` (key -> base64 value; a plan shows a placeholder)."""
    metadata = {
        "name": naming.org_secret_name(org_id),
        "namespace": namespace,
        "labels": naming.org_secret_labels(org_id, config.installation),
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": data,
    }


def _env(request: LaunchRequest, config: ClusterConfig) -> list[Manifest]:
    variables: list[Manifest] = []
    for name, value in (request.spec.get("env") or {}).items():
        if isinstance(value, dict):
            ref = _secret_ref(request, name, value["secret"])
            variables.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
        else:
            variables.append({"name": name, "value": literal(str(value))})
    if launcher_of(request.spec) is not Launcher.NONE:
        index = {"fieldPath": f"metadata.annotations['{naming.COMPLETION_INDEX_KEY}']"}
        variables.append({"name": "NODE_RANK", "valueFrom": {"fieldRef": index}})
    platform = {**recipe_environment(request.spec), **rank_environment(request, config)}
    for name, value in platform.items():
        variables.append({"name": name, "value": literal(value)})
    return variables
