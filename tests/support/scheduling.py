"""The scheduler's tests' helpers: a client's session factory, a local GPU cluster, runs
submitted and accepted (pending → queued), and an admission pass as the scheduler runs it.

Plain functions, for the admission tests and every other package that drives the scheduler's
state directly (retry rules, Kubernetes clusters, time limits, the launch of secrets).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app_state import app_sessionmaker
from core.db import session_scope
from core.models import utcnow
from core.scheduling.admission import accept_pending, admit_queued_runs
from core.scheduling.clusters import Inventory, register_cluster
from core.settings import Settings
from tests.factories import Tenant, app_of, create_run

Factory = sessionmaker[Session]
SETTINGS = Settings(database_url="postgresql://unused", scheduler_starvation_seconds=600)


def sessions(client: TestClient) -> Factory:
    return app_sessionmaker(app_of(client))


def cluster(factory: Factory, a100: int, nodes: int = 1, cpu_slots: int | None = 8) -> None:
    with session_scope(factory) as session:
        register_cluster(session, "gpu", "local", Inventory({"a100": a100}, cpu_slots, nodes))


def submit(client: TestClient, tenant: Tenant, **spec: Any) -> str:
    run_id: str = create_run(client, tenant, **spec)["id"]
    with session_scope(sessions(client)) as session:
        accept_pending(session, [run_id])
    return run_id


def admit(factory: Factory, later: timedelta = timedelta()) -> set[str]:
    with session_scope(factory) as session:
        return {a.run_id for a in admit_queued_runs(session, SETTINGS, utcnow() + later)}
