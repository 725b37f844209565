"""A cluster's inventory from its nodes: allocatable GPUs per GPU type, for the scheduler.

Cordoned (`spec.unschedulable`) and NotReady nodes hold nothing a run could get, so they are
left out. A GPU node without the type label counts under the resource's own name.
"""

from __future__ import annotations

from typing import Any

from core.scheduling.clusters import Inventory
from core.settings import Settings
from workers.executors.kubernetes.client import Apis, read_json


def node_inventory(
    nodes: list[dict[str, Any]], gpu_resource: str, gpu_type_label: str
) -> Inventory:
    gpus: dict[str, int] = {}
    per_node: dict[str, dict[str, int]] = {}
    usable = [node for node in nodes if _usable(node)]
    for node in usable:
        count = _count((node.get("status") or {}).get("allocatable", {}).get(gpu_resource))
        if count:
            metadata = node.get("metadata") or {}
            gpu_type = (metadata.get("labels") or {}).get(gpu_type_label) or gpu_resource
            gpus[gpu_type] = gpus.get(gpu_type, 0) + count
            per_node[str(metadata.get("name") or len(per_node))] = {gpu_type: count}
    return Inventory(gpus, cpu_slots=None, nodes=max(1, len(usable)), node_gpus=per_node)


def read_inventory(apis: Apis, settings: Settings) -> Inventory:
    # resourceVersion "0": any recent version will do, so the API server answers from its watch
    # cache instead of a quorum read of etcd; an inventory re-read every minute can be that stale.
    document = read_json(
        apis.core.list_node, resource_version="0", _request_timeout=apis.request_timeout
    )
    nodes = document.get("items") or []
    return node_inventory(
        nodes, settings.kubernetes_gpu_resource, settings.kubernetes_gpu_type_label
    )


def _usable(node: dict[str, Any]) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _count(quantity: Any) -> int:
    try:
        return int(str(quantity)) if quantity is not None else 0
    except ValueError:
        return 0
