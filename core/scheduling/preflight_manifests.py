"""What a planned run would apply on its Kubernetes cluster: the plan's `manifests`.

The cluster is the one the plan grants (`placement.cluster`); a run not placed yet is shown on
the first Kubernetes cluster by name, unless a local cluster could take it instead (then, as for
a run granted the local cluster, there is nothing to show). Its manifests are rendered by the
executor's own renderer (core/kubernetes/manifests.py) with the executor's own settings
(`cluster_config` of that cluster's `Settings.for_kubernetes_cluster`), from the request the
launch would build: the run as a stand-in id at attempt 1, its TRAINPORT_* environment
(core/runtime_env.py) with a placeholder where the launch mints the run token, its code
snapshot (a git run's is packed at its first launch: a placeholder digest), and the store keys
its secrets would be read from. No secret value is read: the org's Secret is shown with its
name and keys, each holding a placeholder that names the secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from core.executor_kinds import LOCAL_CLUSTER, ExecutorKind
from core.installation import installation_in
from core.kubernetes.config import cluster_config
from core.kubernetes.manifests import Manifest, ManifestRefused, build_attempt, org_secret
from core.launch_request import CodeToRun, LaunchRequest
from core.models import Cluster, DatasetVersion
from core.runtime_env import platform_environment
from core.secrets.schemas import LaunchSecrets
from core.secrets.service import LaunchSecretsMissing, secret_names, store_keys_for
from core.settings import Settings

MINTED_AT_LAUNCH = "<minted at launch>"  # the run token: signed for the real run id and attempt
PACKED_AT_LAUNCH = "<packed from git at the first launch>"  # a git run's snapshot digest
WRITTEN_AT_LAUNCH = "<the value of secret {name!r}, written at launch>"  # the org Secret's data
PLANNED_ATTEMPT = 1


@dataclass(frozen=True)
class PlannedRun:
    """A submission as the plan resolved it: who, what, and where its GPUs were placed."""

    run_id: str
    org_id: str
    project_id: str
    spec: dict[str, Any]
    datasets: dict[str, DatasetVersion] = field(default_factory=dict)  # name -> version
    nodes: tuple[str, ...] = ()  # the granted nodes of a GPU gang


@dataclass(frozen=True)
class PlannedManifests:
    """The objects (None: none to show) and what the plan should say about them."""

    objects: list[Manifest] | None
    warnings: list[str] = field(default_factory=list)


def kubernetes_cluster(
    granted: str | None, clusters: Sequence[Cluster], settings: Settings
) -> str | None:
    """The Kubernetes cluster whose manifests the plan shows; None when the run would run as
    local processes, or where is not known. With no cluster registered yet, the clusters the
    workers' settings will register are the candidates."""
    kinds = {cluster.name: cluster.executor for cluster in clusters}
    if not kinds:
        kinds = dict.fromkeys(settings.kubernetes_clusters, ExecutorKind.KUBERNETES.value)
        if settings.local_cluster:
            kinds[LOCAL_CLUSTER] = ExecutorKind.LOCAL.value
    if granted is not None:
        return granted if kinds.get(granted) == ExecutorKind.KUBERNETES else None
    if ExecutorKind.LOCAL in kinds.values():
        return None
    return min((n for n, kind in kinds.items() if kind == ExecutorKind.KUBERNETES), default=None)


def render(session: Session, settings: Settings, cluster: str, run: PlannedRun) -> PlannedManifests:
    """The Job, its headless Service and (when the run reads secrets) its org's Secret, as
    `cluster`'s executor would apply them; None, with the reason, when the launch would be
    refused before anything is applied."""
    try:
        keys = store_keys_for(session, run.org_id, run.project_id, run.spec)
    except LaunchSecretsMissing as missing:
        return PlannedManifests(None, [f"manifests: the launch would be refused: {missing}"])
    own, warnings = _cluster_settings(settings, cluster)
    config = cluster_config(own, installation_in(session, settings))
    request = _launch_request(settings, run, keys)
    try:
        built = build_attempt(request, config)
    except ManifestRefused as refused:
        warnings.append(f"manifests: cluster {cluster} would refuse it: {refused}")
        return PlannedManifests(None, warnings)
    objects = [built.job, built.service]
    if keys:
        names = secret_names(run.spec).values()
        shown = {keys[name]: WRITTEN_AT_LAUNCH.format(name=name) for name in names}
        objects.insert(0, org_secret(run.org_id, config, built.namespace, shown))
    return PlannedManifests(objects, warnings)


def _cluster_settings(settings: Settings, cluster: str) -> tuple[Settings, list[str]]:
    """`cluster`'s own settings, as its worker reads them (the deployment shares one config)."""
    if cluster in settings.kubernetes_clusters:
        return settings.for_kubernetes_cluster(cluster), []
    # Registered by a worker whose TRAINPORT_KUBERNETES_CLUSTERS this API does not share.
    return settings, [
        f"manifests: cluster {cluster} is not in this API's TRAINPORT_KUBERNETES_CLUSTERS; "
        "shown with its TRAINPORT_KUBERNETES_* settings, which that cluster's own may change"
    ]


def _launch_request(settings: Settings, run: PlannedRun, keys: dict[str, str]) -> LaunchRequest:
    """The request the launch would build (workers/reconciler.py), launch-time values held."""
    env = platform_environment(
        settings, run.org_id, run.run_id, PLANNED_ATTEMPT, MINTED_AT_LAUNCH, run.datasets
    )
    return LaunchRequest(
        run.run_id, run.org_id, PLANNED_ATTEMPT, run.spec, env, run.project_id,
        LaunchSecrets(keys=keys), _code(run.spec), run.nodes,
    )  # fmt: skip


def _code(spec: dict[str, Any]) -> CodeToRun | None:
    """The snapshot a launch runs (workers/launch_code.py): a `workdir` run's own digest; a git
    run's is packed from its commit at the first launch."""
    if spec.get("workdir"):
        return CodeToRun(str(spec["workdir"]), spec.get("working_dir"))
    if spec.get("git"):
        return CodeToRun(PACKED_AT_LAUNCH, spec.get("working_dir"))
    return None
