"""What one attempt becomes on Kubernetes: a headless Service and an Indexed Job, as typed objects.

Built from the validated run spec with the official client's models — never by templating YAML —
so a user's string (a newline, `---`, a quote) is only ever a string value in one field. Every
`$` in a user's command or env value is doubled, because the kubelet expands `$(VAR)` there; `$$`
is how Kubernetes spells a literal `$`, so the program sees exactly what the user wrote.

The Job: completions = parallelism = nodes, `backoffLimit: 0` (Trainport owns retries), a
podFailurePolicy that ignores disruptions (Trainport classifies them as system failures) and
fails fast on exit codes that can never succeed, `podReplacementPolicy: Failed`,
`ttlSecondsAfterFinished`. No `activeDeadlineSeconds`: it counts from the Job's start, time
spent pending included, so the reconciler enforces `scheduling.max_duration` on running time
instead (core/runs/time_limits.py). The pod runs
at the "restricted" Pod Security level, mounts no service account token, reads secrets only
through `secretKeyRef` to its own org's Secret (`naming.org_secret_name`, the keys resolved at
launch: `LaunchRequest.secrets`), and finds rank 0 at `<job>-0.<service>`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k

from core.code import fetch
from core.launch_request import LaunchRequest, resolve_command
from core.outputs import pod_upload
from core.runs.launcher import Launcher, launcher_of, nodes, ranks_per_node, torchrun_prefix
from core.runs.recipes import launch_command, recipe_environment
from workers.executors.kubernetes import naming

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
class ClusterConfig:
    """The settings that shape manifests (see core.settings, `kubernetes_*`)."""

    namespace: str = "trainport-runs"
    default_image: str | None = None
    gpu_resource: str = "nvidia.com/gpu"
    gpu_type_label: str = "nvidia.com/gpu.product"
    tolerations: tuple[dict[str, str], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    priority_classes: dict[str, str] = field(default_factory=dict)
    queue_name: str | None = None
    rendezvous_port: int = 29500
    checkpoint_claim: str | None = None
    code_fetcher_image: str | None = None  # default: the run's own image
    ttl_seconds_after_finished: int = 3600
    installation: str = "default"  # labels every object; see core.installation


@dataclass(frozen=True)
class AttemptManifests:
    namespace: str
    name: str
    job: k.V1Job
    service: k.V1Service
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
        assert target.metadata is not None
        assert target.metadata.annotations is not None
        target.metadata.annotations[naming.SPEC_HASH_KEY] = digest
    return AttemptManifests(namespace, name, job, service, digest)


def to_dict(obj: Any) -> dict[str, Any]:
    """The wire form of a client model, as the API server receives it."""
    document: dict[str, Any] = k.ApiClient().sanitize_for_serialization(obj)
    return document


def spec_hash(job: k.V1Job, service: k.V1Service) -> str:
    """A digest of what was asked for, before the hash itself is written into the objects."""
    canonical = json.dumps([to_dict(job), to_dict(service)], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _check_launchable(spec: dict[str, Any], config: ClusterConfig) -> None:
    if not (spec.get("image") or config.default_image):
        raise ManifestRefused("the run names no image and the cluster has no default image")
    gpu_type = (spec.get("compute") or {}).get("gpu_type")
    if gpu_type and naming.label_value(gpu_type) != gpu_type:
        raise ManifestRefused(f"gpu_type {gpu_type!r} is not a valid node label value")


def _metadata(
    request: LaunchRequest, config: ClusterConfig, name: str | None, namespace: str | None
) -> k.V1ObjectMeta:
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
    return k.V1ObjectMeta(name=name, namespace=namespace, labels=labels, annotations=annotations)


def build_service_manifest(
    request: LaunchRequest, config: ClusterConfig, namespace: str
) -> k.V1Service:
    """Headless, publishing not-ready pods: rank 0 must resolve before any rank is ready."""
    name = naming.attempt_name(request.run_id, request.attempt)
    port = k.V1ServicePort(name="rendezvous", port=config.rendezvous_port, protocol="TCP")
    spec = k.V1ServiceSpec(
        cluster_ip="None",
        publish_not_ready_addresses=True,
        selector=naming.selector_labels(request.run_id, request.attempt, config.installation),
        ports=[port],
    )
    metadata = _metadata(request, config, name, namespace)
    return k.V1Service(api_version="v1", kind="Service", metadata=metadata, spec=spec)


def build_job_manifest(request: LaunchRequest, config: ClusterConfig, namespace: str) -> k.V1Job:
    name = naming.attempt_name(request.run_id, request.attempt)
    completions = nodes(request.spec)
    metadata = _metadata(request, config, name, namespace)
    if config.queue_name:
        assert metadata.labels is not None
        metadata.labels[naming.QUEUE_KEY] = config.queue_name
    spec = k.V1JobSpec(
        completions=completions,
        parallelism=completions,
        completion_mode="Indexed",
        backoff_limit=0,
        pod_failure_policy=_pod_failure_policy(),
        pod_replacement_policy="Failed",
        ttl_seconds_after_finished=config.ttl_seconds_after_finished,
        template=_pod_template(request, config),
    )
    return k.V1Job(api_version="batch/v1", kind="Job", metadata=metadata, spec=spec)


def _pod_failure_policy() -> k.V1PodFailurePolicy:
    disrupted = k.V1PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget", status="True")
    hopeless = k.V1PodFailurePolicyOnExitCodesRequirement(
        container_name=CONTAINER, operator="In", values=NEVER_SUCCEEDS
    )
    return k.V1PodFailurePolicy(
        rules=[
            k.V1PodFailurePolicyRule(action="Ignore", on_pod_conditions=[disrupted]),
            k.V1PodFailurePolicyRule(action="FailJob", on_exit_codes=hopeless),
        ]
    )


def _pod_template(request: LaunchRequest, config: ClusterConfig) -> k.V1PodTemplateSpec:
    spec = request.spec
    gpu_type = (spec.get("compute") or {}).get("gpu_type")
    priority = (spec.get("scheduling") or {}).get("priority") or "normal"
    pod = k.V1PodSpec(
        restart_policy="Never",
        subdomain=naming.attempt_name(request.run_id, request.attempt),
        automount_service_account_token=False,
        enable_service_links=False,  # no Service variables beside the user's env
        security_context=k.V1PodSecurityContext(
            run_as_non_root=True, seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault")
        ),
        init_containers=[_code_fetcher(request, config)] if request.code else None,
        containers=[_container(request, config)],
        volumes=_volumes(request, config),
        node_selector={config.gpu_type_label: gpu_type} if gpu_type else None,
        tolerations=[k.V1Toleration(**t) for t in config.tolerations] or None,
        image_pull_secrets=[k.V1LocalObjectReference(name=s) for s in config.image_pull_secrets]
        or None,
        priority_class_name=config.priority_classes.get(str(priority)),
        affinity=_placed_on(request.nodes),
    )
    return k.V1PodTemplateSpec(metadata=_metadata(request, config, None, None), spec=pod)


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


def _placed_on(nodes: tuple[str, ...]) -> k.V1Affinity | None:
    """Only the nodes the scheduler's node-shaped fit chose (by node name, which a label might
    not match): the gang runs where Trainport counted its GPUs free."""
    if not nodes:
        return None
    names = k.V1NodeSelectorRequirement(key="metadata.name", operator="In", values=list(nodes))
    term = k.V1NodeSelectorTerm(match_fields=[names])
    required = k.V1NodeSelector(node_selector_terms=[term])
    return k.V1Affinity(
        node_affinity=k.V1NodeAffinity(required_during_scheduling_ignored_during_execution=required)
    )


def _container(request: LaunchRequest, config: ClusterConfig) -> k.V1Container:
    cwd = working_dir(request)
    command = wrapped_command(request, config)
    mounts = [k.V1VolumeMount(name="dshm", mount_path="/dev/shm")]  # noqa: S108 - shared memory
    if config.checkpoint_claim:
        mounts.append(
            k.V1VolumeMount(name="checkpoints", mount_path=CHECKPOINT_DIR, sub_path=request.run_id)
        )
    if request.code:
        mounts.append(k.V1VolumeMount(name="code", mount_path=CODE_DIR))
    return k.V1Container(
        name=CONTAINER,
        image=request.spec.get("image") or config.default_image,
        image_pull_policy=IMAGE_PULL_POLICY,
        command=command,  # escaped by container_command
        working_dir=cwd,
        env=_env(request, config),
        resources=_resources(request.spec.get("compute") or {}, config),
        volume_mounts=mounts,
        security_context=_restricted(),
    )


def _restricted() -> k.V1SecurityContext:
    return k.V1SecurityContext(
        allow_privilege_escalation=False,
        run_as_non_root=True,
        capabilities=k.V1Capabilities(drop=["ALL"]),
        seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
    )


def working_dir(request: LaunchRequest) -> str | None:
    """Where the trainer starts: `working_dir` inside the unpacked code, else its root; the
    image's own working directory when the run ships no code."""
    if request.code is None:
        return None
    inside = request.code.working_dir
    return f"{CODE_DIR}/{inside}" if inside else CODE_DIR


def _code_fetcher(request: LaunchRequest, config: ClusterConfig) -> k.V1Container:
    """Fetches the run's snapshot into the `code` emptyDir before the trainer starts: a
    presigned URL asked for with the run token (core/code/fetch.py), no storage credential."""
    assert request.code is not None
    wanted = ("TRAINPORT_API_URL", "TRAINPORT_RUN_ID", "TRAINPORT_RUN_TOKEN")
    values = {name: request.env[name] for name in wanted if name in request.env}
    values["TRAINPORT_RUN_ID"] = request.run_id
    values |= {"TRAINPORT_CODE_DIGEST": request.code.digest, "TRAINPORT_CODE_DIR": CODE_DIR}
    return k.V1Container(
        name=CODE_FETCHER,
        image=config.code_fetcher_image or request.spec.get("image") or config.default_image,
        image_pull_policy=IMAGE_PULL_POLICY,
        command=["python3", "-c", literal(FETCH_PROGRAM)],
        env=[k.V1EnvVar(name=name, value=literal(value)) for name, value in values.items()],
        resources=k.V1ResourceRequirements(
            requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "512Mi"}
        ),
        volume_mounts=[k.V1VolumeMount(name="code", mount_path=CODE_DIR)],
        security_context=_restricted(),
    )


def literal(text: str) -> str:
    """`text` as the kubelet will hand it over: `$(VAR)` must not expand, so `$` becomes `$$`."""
    return text.replace("$", "$$")


def _resources(compute: dict[str, Any], config: ClusterConfig) -> k.V1ResourceRequirements:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if compute.get("cpus"):
        requests["cpu"] = str(compute["cpus"])
    if compute.get("memory"):
        requests["memory"] = limits["memory"] = str(compute["memory"])
    gpus = int(compute.get("gpus_per_node") or 0)
    if gpus:
        requests[config.gpu_resource] = limits[config.gpu_resource] = str(gpus)
    return k.V1ResourceRequirements(requests=requests or None, limits=limits or None)


def _volumes(request: LaunchRequest, config: ClusterConfig) -> list[k.V1Volume]:
    memory = (request.spec.get("compute") or {}).get("memory")
    shm = k.V1EmptyDirVolumeSource(medium="Memory", size_limit=str(memory) if memory else None)
    volumes = [k.V1Volume(name="dshm", empty_dir=shm)]
    if request.code:
        volumes.append(k.V1Volume(name="code", empty_dir=k.V1EmptyDirVolumeSource()))
    if config.checkpoint_claim:
        claim = k.V1PersistentVolumeClaimVolumeSource(claim_name=config.checkpoint_claim)
        volumes.append(k.V1Volume(name="checkpoints", persistent_volume_claim=claim))
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


def _secret_ref(request: LaunchRequest, variable: str, secret: str) -> k.V1SecretKeySelector:
    """A reference into the run's own org's Secret; never a value in the manifest."""
    key = request.secrets.keys.get(secret)
    if key is None:  # the reconciler resolves every name first; this request was built elsewhere
        raise ManifestRefused(
            f"env {variable} needs secret {secret!r}, which was not resolved for this launch"
        )
    return k.V1SecretKeySelector(name=naming.org_secret_name(request.org_id), key=key)


def build_org_secret(request: LaunchRequest, config: ClusterConfig, namespace: str) -> k.V1Secret:
    """The launch's resolved values as its org's Secret (merged into what the org has there)."""
    data = {
        key: base64.b64encode(value.encode()).decode("ascii")
        for key, value in request.secrets.store().items()
    }
    metadata = k.V1ObjectMeta(
        name=naming.org_secret_name(request.org_id),
        namespace=namespace,
        labels=naming.org_secret_labels(request.org_id, config.installation),
    )
    return k.V1Secret(api_version="v1", kind="Secret", type="Opaque", metadata=metadata, data=data)


def _env(request: LaunchRequest, config: ClusterConfig) -> list[k.V1EnvVar]:
    variables = []
    for name, value in (request.spec.get("env") or {}).items():
        if isinstance(value, dict):
            ref = _secret_ref(request, name, value["secret"])
            variables.append(k.V1EnvVar(name=name, value_from=k.V1EnvVarSource(secret_key_ref=ref)))
        else:
            variables.append(k.V1EnvVar(name=name, value=literal(str(value))))
    if launcher_of(request.spec) is not Launcher.NONE:
        index = k.V1ObjectFieldSelector(
            field_path=f"metadata.annotations['{naming.COMPLETION_INDEX_KEY}']"
        )
        source = k.V1EnvVarSource(field_ref=index)
        variables.append(k.V1EnvVar(name="NODE_RANK", value_from=source))
    platform = {**recipe_environment(request.spec), **rank_environment(request, config)}
    for name, value in platform.items():
        variables.append(k.V1EnvVar(name=name, value=literal(value)))
    return variables
