"""Apps with their own provenance keys on the session's database, and a started run to sign."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from tests.factories import Tenant, make_tenant
from tests.support.training import SECRET, start, submit


@contextmanager
def app_with(postgres_url: str, root: Path, **settings: Any) -> Iterator[TestClient]:
    """An API process with these settings (keys, mostly), its own state folder."""
    configured = Settings(
        database_url=postgres_url,
        key_touch_interval_seconds=0,
        state_dir=root / "state",
        storage_dir=root / "storage",
        secret_key=SECRET,
        **settings,
    )
    with TestClient(create_app(configured), raise_server_exceptions=False) as client:
        yield client


def started_run(api: TestClient, **spec: Any) -> tuple[Tenant, str]:
    """A new org's run, started once on the local cluster: its provenance is recorded."""
    org = make_tenant(api)
    run_id = submit(api, org, **spec)
    start(api, run_id)
    return org, run_id


def provenance(api: TestClient, org: Tenant, run_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/runs/{run_id}/provenance", headers=org.headers)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def verdict(api: TestClient, org: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/provenance/verify", json=body, headers=org.headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer
