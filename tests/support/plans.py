"""Apps for the plan tests (`POST /v1/runs/plan`): an API naming two Kubernetes clusters with
their own settings, and clusters registered with the nodes the scheduler would have read.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from core.db import session_scope
from core.scheduling.clusters import Inventory, register_cluster
from core.settings import Settings
from tests.support.scheduling import sessions

CLUSTERS = {
    "east": {"namespace": "team-{org}", "queue_name": "east-queue"},
    "west": {"default_image": "west/trainer:2"},
}
NODES = {"gpu-a": {"h100": 4}, "gpu-b": {"h100": 4}, "gpu-c": {"h100": 4}}


def api_with(fresh_url: str, **settings: Any) -> TestClient:
    values: dict[str, Any] = {
        "database_url": fresh_url,
        "key_touch_interval_seconds": 0,
        "local_cluster": False,
        "installation_id": "plan-test",
        "kubernetes_default_image": "python:3.11-slim",
        "kubernetes_clusters": CLUSTERS,
        **settings,
    }
    return TestClient(create_app(Settings(**values)), raise_server_exceptions=False)


def register(client: TestClient, name: str, executor: str, nodes: dict[str, Any]) -> None:
    gpus = {"h100": sum(held.get("h100", 0) for held in nodes.values())}
    with session_scope(sessions(client)) as session:
        register_cluster(session, name, executor, Inventory(gpus, None, len(nodes), nodes))
