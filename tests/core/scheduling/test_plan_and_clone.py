"""`POST /v1/runs/plan` (what a submission would become; nothing stored) and
`POST /v1/runs/{id}/clone` (a spec with `--set` overrides; `cloned_from` recorded)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.app_state import app_engine
from core.db import session_scope
from core.models import OutboxMessage, Run, RunEvent
from core.provenance.record import freeze
from core.scheduling.clusters import Inventory, register_cluster
from core.settings import Settings
from tests.factories import create_run, make_key, make_tenant, run_spec
from tests.support.scheduling import sessions


@pytest.fixture
def rated(fresh_url: str) -> Iterator[TestClient]:
    settings = Settings(
        database_url=fresh_url, key_touch_interval_seconds=0, gpu_hour_rates={"h100": 3.0}
    )
    app = create_app(settings)
    yield TestClient(app, raise_server_exceptions=False)
    app_engine(app).dispose()


def counts(client: TestClient) -> tuple[int, int, int]:
    with session_scope(sessions(client)) as session:
        runs, events, messages = (
            int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (Run, RunEvent, OutboxMessage)
        )
        return runs, events, messages


def gpu_spec(**scheduling: Any) -> dict[str, Any]:
    compute = {"nodes": 2, "gpus_per_node": 4, "gpu_type": "h100"}
    return run_spec(compute=compute, scheduling=scheduling)


def test_a_plan_resolves_places_and_prices_a_run_and_stores_nothing(rated: TestClient) -> None:
    with session_scope(sessions(rated)) as session:
        register_cluster(session, "gpu", "local", Inventory({"h100": 16}, 8, 4))
    tenant = make_tenant(rated)
    before = counts(rated)
    response = rated.post(
        "/v1/runs/plan", json=gpu_spec(max_duration="90m"), headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    plan = response.json()
    assert counts(rated) == before
    assert plan["spec"]["scheduling"]["max_retries"] == 0  # defaults filled in
    assert plan["spec"]["name"].startswith("run-")
    assert plan["project_id"] == tenant.project_id
    placement = plan["placement"]
    assert (placement["fits"], placement["reason"], placement["cluster"]) == (True, "ready", "gpu")
    assert (placement["gpu_type"], placement["gpus"], placement["position"]) == ("h100", 8, 1)
    assert plan["estimate"] == {
        "max_duration_seconds": 5400, "gpu_hours": 12.0, "cost": 36.0, "currency": "USD",
        "rate": 3.0,
    }  # fmt: skip


def test_a_plan_says_why_a_run_cannot_start(rated: TestClient) -> None:
    with session_scope(sessions(rated)) as session:
        register_cluster(session, "gpu", "local", Inventory({"h100": 4}, 8, 1))
    tenant = make_tenant(rated)
    never = rated.post("/v1/runs/plan", json=gpu_spec(), headers=tenant.headers).json()
    assert never["placement"]["reason"] == "unschedulable"
    assert never["estimate"]["gpu_hours"] is None  # no max_duration: nothing to price
    rated.put(f"/v1/orgs/{tenant.org_id}/quota", json={"max_gpus": 2}, headers=tenant.headers)
    small = run_spec(compute={"gpus_per_node": 4, "gpu_type": "h100"})
    quota = rated.post("/v1/runs/plan", json=small, headers=tenant.headers).json()["placement"]
    assert (quota["fits"], quota["reason"]) == (False, "quota_exhausted")
    missing = run_spec(data={"datasets": ["nowhere@3"]})
    warned = rated.post("/v1/runs/plan", json=missing, headers=tenant.headers).json()
    assert warned["datasets"][0]["error"] == "dataset 'nowhere' does not exist"
    assert warned["warnings"]


def test_a_plan_needs_a_member_and_a_valid_body(rated: TestClient) -> None:
    tenant = make_tenant(rated)
    viewer = make_key(rated, tenant, "viewer")
    assert rated.post("/v1/runs/plan", json=run_spec(), headers=viewer.headers).status_code == 403
    bad = rated.post("/v1/runs/plan", json=run_spec(bogus=1), headers=tenant.headers)
    assert bad.status_code == 422


def clone(client: TestClient, run_id: str, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"/v1/runs/{run_id}/clone", json=body, headers=headers)


def test_a_clone_applies_dotted_overrides_as_set_does_and_records_its_source(
    rated: TestClient,
) -> None:
    tenant = make_tenant(rated)
    source = create_run(
        rated, tenant, recipe="lm", command=None, parameters={"lr": 0.1, "steps": 10},
        labels={"team": "nlp"}, env={"A": "1"},
    )  # fmt: skip
    overrides = {
        "parameters.lr": 0.0003,
        "compute.nodes": 2,
        "labels.example.com/owner": "ada",
        "env.LR": "1e-3",
        "scheduling.max_duration": "2h",
    }
    response = clone(rated, source["id"], tenant.headers, overrides=overrides)
    assert response.status_code == 201, response.text
    copy = response.json()
    assert response.headers["Location"] == f"/v1/runs/{copy['id']}"
    assert copy["cloned_from"] == source["id"]
    assert copy["name"] != source["name"]
    assert copy["spec"]["parameters"] == {"lr": 0.0003, "steps": 10}
    assert copy["spec"]["compute"]["nodes"] == 2
    assert copy["labels"] == {"team": "nlp", "example.com/owner": "ada"}
    assert copy["spec"]["env"] == {"A": "1", "LR": "1e-3"}
    assert copy["spec"]["scheduling"]["max_duration"] == 7200
    assert copy["status"] == "pending"
    fetched = rated.get(f"/v1/runs/{copy['id']}", headers=tenant.headers).json()
    assert fetched["cloned_from"] == source["id"]
    events = rated.get(f"/v1/runs/{copy['id']}/events", headers=tenant.headers).json()["data"]
    assert [e["kind"] for e in events] == ["created", "cloned"]
    with session_scope(sessions(rated)) as session:
        run = session.get(Run, copy["id"])
        assert run is not None
        assert freeze(session, run).record["cloned_from"] == source["id"]


def test_a_clone_is_named_and_placed_as_asked_and_refuses_bad_overrides(
    rated: TestClient,
) -> None:
    tenant = make_tenant(rated)
    rated.post("/v1/projects", json={"name": "vision"}, headers=tenant.headers)
    source = create_run(rated, tenant)
    named = clone(rated, source["id"], tenant.headers, name="again", project="vision").json()
    assert named["name"] == "again"
    assert named["project_id"] != source["project_id"]
    unknown = clone(rated, source["id"], tenant.headers, overrides={"compute.bogus": 1})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["pointer"] == "/compute/bogus"
    not_a_map = clone(rated, source["id"], tenant.headers, overrides={"image.x": 1})
    assert not_a_map.status_code == 422
    assert "image is not a mapping" in not_a_map.json()["detail"]
    stranger = make_tenant(rated)
    assert clone(rated, source["id"], stranger.headers).status_code == 404
    viewer = make_key(rated, tenant, "viewer")
    assert clone(rated, source["id"], viewer.headers).status_code == 403
