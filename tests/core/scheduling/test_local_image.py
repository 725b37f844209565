"""The local executor runs no image: an image run admitted there gets a warning event (and
`warnings`), or, with TRAINPORT_LOCAL_IMAGE_POLICY=refuse, is refused at submit when every
cluster is local and failed `spec_refused` at admission otherwise."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from api.app_state import app_sessionmaker
from core.db import session_scope
from core.runs.schemas import LOCAL_IMAGE_WARNING
from core.scheduling.admission import accept_pending, admit_queued_runs
from core.scheduling.clusters import Inventory, register_cluster
from core.settings import LocalImagePolicy, Settings
from tests.factories import app_of, create_run, make_tenant


def admit_all(client: TestClient, settings: Settings, executor: str = "local") -> None:
    factory = app_sessionmaker(app_of(client))
    with session_scope(factory) as session:
        register_cluster(session, "local", executor, Inventory({}, 8, 1))
    with session_scope(factory) as session:
        accept_pending(session)
    with session_scope(factory) as session:
        admit_queued_runs(session, settings)


def events(client: TestClient, headers: dict[str, str], run_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get(f"/v1/runs/{run_id}/events", headers=headers).json()[
        "data"
    ]
    return found


def test_an_image_run_on_the_local_executor_is_marked_at_admission(
    fresh_client: TestClient,
) -> None:
    tenant = make_tenant(fresh_client)
    run = create_run(fresh_client, tenant, image="ghcr.io/acme/train:1")
    plain = create_run(fresh_client, tenant, image=None)
    admit_all(fresh_client, Settings())
    warned = [e for e in events(fresh_client, tenant.headers, run["id"]) if e["kind"] == "warning"]
    assert [e["message"] for e in warned] == [LOCAL_IMAGE_WARNING]
    shown = fresh_client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).json()
    assert shown["status"] == "starting"
    assert LOCAL_IMAGE_WARNING in shown["warnings"]
    assert not [
        e for e in events(fresh_client, tenant.headers, plain["id"]) if e["kind"] == "warning"
    ]


def test_an_operator_can_refuse_image_runs_on_the_local_executor(
    fresh_url: str, fresh_client: TestClient
) -> None:
    refusing = Settings(database_url=fresh_url, local_image_policy=LocalImagePolicy.REFUSE)
    from api.app import create_app

    with TestClient(create_app(refusing), raise_server_exceptions=False) as client:
        tenant = make_tenant(client)
        response = client.post(
            "/v1/runs",
            json={"image": "ghcr.io/acme/train:1", "command": ["python", "-c", "1"]},
            headers=tenant.headers,
        )
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "image_not_supported"
    # Submitted where image runs were allowed, admitted locally under `refuse`: failed, not run.
    tenant = make_tenant(fresh_client)
    run = create_run(fresh_client, tenant, image="ghcr.io/acme/train:1")
    admit_all(fresh_client, refusing)
    shown = fresh_client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).json()
    assert (shown["status"], shown["status_reason"]) == ("failed", "spec_refused")
