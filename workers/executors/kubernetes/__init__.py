"""The Kubernetes executor: the only package that imports the `kubernetes` client.

The objects it applies are rendered in core.kubernetes (names and labels in `naming`, an
attempt's Job, Service and org Secret as plain JSON in `manifests`, their settings in `config`),
which `POST /v1/runs/plan` shows too; `client` builds the API client from settings; `mirror` keeps
list-then-watch copies of Jobs and Pods; `observations` maps them to per-rank observations;
`podlogs` copies pod logs into the run logs in the database; `inventory` reads nodes for the
scheduler; `executor` ties them together behind the Executor protocol.
"""

from __future__ import annotations

from core.installation import installation_id
from core.kubernetes.config import cluster_config
from core.log_archive import LogArchive
from core.settings import Settings
from workers.executors.kubernetes.client import apis_from_settings
from workers.executors.kubernetes.executor import KubernetesExecutor
from workers.executors.kubernetes.inventory import read_inventory


def executor_from_settings(
    settings: Settings, archive: LogArchive, cluster_name: str = ""
) -> KubernetesExecutor:
    return KubernetesExecutor(
        apis_from_settings(settings),
        cluster_config(settings, installation_id(settings)),
        archive,
        settings.state_dir,
        unschedulable_seconds=settings.kubernetes_unschedulable_seconds,
        resync_seconds=settings.kubernetes_resync_seconds,
        cluster_name=cluster_name,
    )


__all__ = ["KubernetesExecutor", "executor_from_settings", "read_inventory"]
