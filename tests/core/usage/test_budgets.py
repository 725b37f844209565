"""Budgets: admins set them per org or project; soft ones alert at 80% and 100% once per
period; hard ones keep their scope's queued runs queued with `budget_exhausted`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.app_state import app_engine, app_sessionmaker
from core.db import session_scope
from core.models import BudgetAlert, Run, RunAttempt, WebhookDelivery, utcnow
from core.scheduling.admission import accept_pending, admit_queued_runs
from core.scheduling.clusters import Inventory, register_cluster
from core.settings import Settings
from core.usage import budgets, rollup
from core.usage.rates import RateCard
from tests.factories import PUBLIC_HOOK, Tenant, app_of, create_run, make_key, make_tenant

Factory = sessionmaker[Session]
RATES = {"h100": 2.0}


@pytest.fixture
def settings(fresh_url: str) -> Settings:
    return Settings(database_url=fresh_url, key_touch_interval_seconds=0, gpu_hour_rates=RATES)


@pytest.fixture
def rated(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    yield TestClient(app, raise_server_exceptions=False)
    app_engine(app).dispose()


def sessions(client: TestClient) -> Factory:
    return app_sessionmaker(app_of(client))


def spend(client: TestClient, tenant: Tenant, gpu_hours: float, project: str | None = None) -> None:
    """An ended attempt of `gpu_hours` H100 hours (2.0 USD each), from the start of this month."""
    run_id = create_run(client, tenant, **({"project": project} if project else {}))["id"]
    started = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    ended = started + timedelta(hours=gpu_hours)
    with session_scope(sessions(client)) as session:
        run = session.get(Run, run_id)
        assert run is not None
        session.add(
            RunAttempt(
                run_id=run_id, attempt=1, org_id=run.org_id, project_id=run.project_id,
                cluster="gpu", gpu_type="h100", gpus=1, admitted_at=started,
                started_at=started, ended_at=ended, outcome="succeeded",
            )
        )  # fmt: skip
        session.flush()
        metered = rollup.Metered(run.org_id, run.project_id, "h100", 1, started, ended)
        rollup.add_ended(session, [metered])


def budget_url(tenant: Tenant, project: str | None = None) -> str:
    scope = f"/projects/{project}" if project else ""
    return f"/v1/orgs/{tenant.org_id}{scope}/budget"


def record_alerts(client: TestClient, settings: Settings) -> list[int]:
    with session_scope(sessions(client)) as session:
        return budgets.record_alerts(session, utcnow(), RateCard.of(settings))


def test_an_admin_sets_reads_and_deletes_a_budget_with_its_spend(rated: TestClient) -> None:
    tenant = make_tenant(rated)
    spend(rated, tenant, 5)
    body = {"amount": 100, "period": "monthly", "enforcement": "hard"}
    put = rated.put(budget_url(tenant), json=body, headers=tenant.headers)
    assert put.status_code == 200, put.text
    got = rated.get(budget_url(tenant), headers=tenant.headers).json()
    assert (got["amount"], got["unit"], got["currency"], got["spent"]) == (
        100,
        "currency",
        "USD",
        10.0,
    )
    assert (got["fraction"], got["exhausted"], got["project_id"]) == (0.1, False, None)
    hours = rated.put(
        budget_url(tenant, "default"), json={"amount": 10, "unit": "gpu_hours", "period": "total"},
        headers=tenant.headers,
    ).json()  # fmt: skip
    assert (hours["spent"], hours["fraction"], hours["project_id"]) == (5.0, 0.5, tenant.project_id)
    listed = rated.get(f"/v1/orgs/{tenant.org_id}/budgets", headers=tenant.headers).json()
    assert len(listed["data"]) == 2
    assert rated.delete(budget_url(tenant), headers=tenant.headers).status_code == 204
    assert rated.get(budget_url(tenant), headers=tenant.headers).status_code == 404


def test_budgets_are_for_admins_of_their_own_org(rated: TestClient) -> None:
    tenant, stranger = make_tenant(rated), make_tenant(rated)
    member = make_key(rated, tenant, "member")
    assert (
        rated.put(budget_url(tenant), json={"amount": 1}, headers=member.headers).status_code == 403
    )
    assert rated.get(budget_url(tenant), headers=member.headers).status_code == 403
    foreign = rated.put(budget_url(tenant), json={"amount": 1}, headers=stranger.headers)
    assert foreign.status_code == 404
    assert (
        rated.put(budget_url(tenant), json={"amount": -1}, headers=tenant.headers).status_code
        == 422
    )


def test_a_soft_budget_alerts_at_80_and_100_percent_once_each(
    rated: TestClient, settings: Settings
) -> None:
    tenant = make_tenant(rated)
    rated.put(budget_url(tenant), json={"amount": 20}, headers=tenant.headers)  # 10 H100 hours
    spend(rated, tenant, 7)  # 14 of 20: 70%
    assert record_alerts(rated, settings) == []
    spend(rated, tenant, 1)  # 16 of 20: 80%
    assert len(record_alerts(rated, settings)) == 1
    assert record_alerts(rated, settings) == []  # once per period
    spend(rated, tenant, 3)  # 22 of 20
    assert len(record_alerts(rated, settings)) == 1
    assert record_alerts(rated, settings) == []
    alerts = rated.get(f"/v1/orgs/{tenant.org_id}/budget-alerts", headers=tenant.headers).json()
    assert [(a["threshold"], a["spent"], a["amount"]) for a in alerts["data"]] == [
        (100, 22.0, 20.0),
        (80, 16.0, 20.0),
    ]
    # A new amount re-arms the alerts of this period.
    rated.put(budget_url(tenant), json={"amount": 25}, headers=tenant.headers)
    assert len(record_alerts(rated, settings)) == 1  # 22 of 25: 88%
    with session_scope(sessions(rated)) as session:
        assert len(session.scalars(select(BudgetAlert)).all()) == 3


def submit_gpu_run(client: TestClient, tenant: Tenant, project: str | None = None) -> str:
    spec: dict[str, Any] = {"compute": {"gpus_per_node": 1, "gpu_type": "h100"}}
    if project:
        spec["project"] = project
    run_id: str = create_run(client, tenant, **spec)["id"]
    with session_scope(sessions(client)) as session:
        accept_pending(session, [run_id])
    return run_id


def admit(client: TestClient, settings: Settings) -> set[str]:
    with session_scope(sessions(client)) as session:
        return {a.run_id for a in admit_queued_runs(session, settings)}


def test_a_spent_hard_budget_keeps_runs_queued_with_budget_exhausted(
    rated: TestClient, settings: Settings
) -> None:
    with session_scope(sessions(rated)) as session:
        register_cluster(session, "gpu", "local", Inventory({"h100": 8}, 8, 1))
    tenant, neighbour = make_tenant(rated), make_tenant(rated)
    rated.post("/v1/projects", json={"name": "vision"}, headers=tenant.headers)
    rated.put(
        budget_url(tenant, "default"), json={"amount": 10, "enforcement": "hard"},
        headers=tenant.headers,
    )  # fmt: skip
    spend(rated, tenant, 5)  # 10 of 10: spent
    blocked = submit_gpu_run(rated, tenant)
    elsewhere = submit_gpu_run(rated, tenant, "vision")  # another project of the same org
    theirs = submit_gpu_run(rated, neighbour)
    assert admit(rated, settings) == {elsewhere, theirs}
    run = rated.get(f"/v1/runs/{blocked}", headers=tenant.headers).json()
    assert run["status"] == "queued"
    assert run["queue"]["reason"] == "budget_exhausted"
    assert "10.00 of 10.00 USD this month" in run["queue"]["detail"]
    # A soft budget only alerts: made soft, the budget lets the run start.
    rated.put(budget_url(tenant, "default"), json={"amount": 10}, headers=tenant.headers)
    assert admit(rated, settings) == {blocked}


def test_a_hard_org_budget_holds_every_project(rated: TestClient, settings: Settings) -> None:
    with session_scope(sessions(rated)) as session:
        register_cluster(session, "gpu", "local", Inventory({"h100": 8}, 8, 1))
    tenant = make_tenant(rated)
    rated.put(
        budget_url(tenant), json={"amount": 1, "unit": "gpu_hours", "enforcement": "hard"},
        headers=tenant.headers,
    )  # fmt: skip
    spend(rated, tenant, 1)
    run_id = submit_gpu_run(rated, tenant)
    assert admit(rated, settings) == set()
    queue = rated.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()["queue"]
    assert queue["reason"] == "budget_exhausted"
    assert "GPU-hours" in queue["detail"]
    assert rated.delete(budget_url(tenant), headers=tenant.headers).status_code == 204
    assert admit(rated, settings) == {run_id}


def test_a_budget_threshold_is_a_webhook_event(rated: TestClient, settings: Settings) -> None:
    """Issue 20: a soft budget says so 'with an event and a webhook at 80% and 100%'."""
    tenant = make_tenant(rated)
    hook = rated.post(
        "/v1/webhooks",
        json={"url": PUBLIC_HOOK, "event_types": ["budget.threshold_reached"]},
        headers=tenant.headers,
    )
    assert hook.status_code == 201, hook.text
    rated.put(budget_url(tenant), json={"amount": 20}, headers=tenant.headers)
    spend(rated, tenant, 11)  # 22 of 20: both thresholds at once
    assert len(record_alerts(rated, settings)) == 2

    with session_scope(sessions(rated)) as session:
        rows = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.endpoint_id == hook.json()["id"])
        ).all()
    payloads = sorted((row.payload["data"] for row in rows), key=lambda d: d["threshold"])
    assert [row.event_type for row in rows] == ["budget.threshold_reached"] * 2
    assert [(d["threshold"], d["spent"], d["amount"]) for d in payloads] == [
        (80, 22.0, 20.0),
        (100, 22.0, 20.0),
    ]
    assert payloads[0]["unit"] == "currency"
    assert payloads[0]["project_id"] is None
