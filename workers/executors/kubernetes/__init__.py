"""The Kubernetes executor: the only package that imports the `kubernetes` client.

`naming` holds every name, label key and selector; `manifests` builds an attempt's Job and
Service as typed objects; `client` builds the API client from settings; `mirror` keeps
list-then-watch copies of Jobs and Pods; `observations` maps them to per-rank observations;
`podlogs` copies pod logs into the run logs in the database; `inventory` reads nodes for the
scheduler; `executor` ties them together behind the Executor protocol.
"""

from __future__ import annotations

from dataclasses import replace

from core.installation import installation_id
from core.log_archive import LogArchive
from core.settings import Settings
from workers.executors.kubernetes.client import apis_from_settings, cluster_config
from workers.executors.kubernetes.executor import KubernetesExecutor
from workers.executors.kubernetes.inventory import read_inventory


def executor_from_settings(
    settings: Settings, archive: LogArchive, cluster_name: str = ""
) -> KubernetesExecutor:
    return KubernetesExecutor(
        apis_from_settings(settings),
        replace(cluster_config(settings), installation=installation_id(settings)),
        archive,
        settings.state_dir,
        unschedulable_seconds=settings.kubernetes_unschedulable_seconds,
        resync_seconds=settings.kubernetes_resync_seconds,
        cluster_name=cluster_name,
    )


__all__ = ["KubernetesExecutor", "executor_from_settings", "read_inventory"]
