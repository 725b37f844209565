"""GPU-hours and cost: per attempt and run (live while running), the daily rollup kept when
attempts end, and `GET /v1/orgs/{id}/usage`, on a real PostgreSQL database of each test's own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.app_state import app_engine, app_sessionmaker
from core import migrate
from core.db import session_scope
from core.models import Run, RunAttempt, UsageDaily, utcnow
from core.runs.attempts import (
    AttemptOutcome,
    Ending,
    Grant,
    close_attempt,
    mark_started,
    open_attempt,
)
from core.runs.states import StatusReason
from core.settings import Settings
from core.usage import budgets, rollup
from core.usage.rates import RateCard
from tests.factories import Tenant, app_of, create_run, make_key, make_tenant

Factory = sessionmaker[Session]
RATES = {"h100": 2.5, "a100": 1.2}
DAY = datetime(2026, 3, 10, tzinfo=UTC)


@pytest.fixture
def rated(fresh_url: str) -> Iterator[TestClient]:
    """The API with GPU-hour rates in euros."""
    settings = Settings(
        database_url=fresh_url, key_touch_interval_seconds=0, gpu_hour_rates=RATES, currency="EUR"
    )
    app = create_app(settings)
    yield TestClient(app, raise_server_exceptions=False)
    app_engine(app).dispose()


def sessions(client: TestClient) -> Factory:
    return app_sessionmaker(app_of(client))


def attempt(
    client: TestClient,
    run_id: str,
    number: int,
    gpu_type: str,
    gpus: int,
    started: datetime,
    ended: datetime | None,
) -> None:
    """A known attempt, rolled up as `close_attempt` rolls an ending up."""
    with session_scope(sessions(client)) as session:
        run = session.get(Run, run_id)
        assert run is not None
        row = RunAttempt(
            run_id=run_id, attempt=number, org_id=run.org_id, project_id=run.project_id,
            cluster="gpu", gpu_type=gpu_type, gpus=gpus, admitted_at=started,
            started_at=started, ended_at=ended, outcome="succeeded" if ended else None,
        )  # fmt: skip
        session.add(row)
        session.flush()
        rollup.add_ended(
            session, [rollup.Metered(run.org_id, run.project_id, gpu_type, gpus, started, ended)]
        )


def test_a_runs_usage_is_allocated_gpus_times_wall_time_priced_per_gpu_type(
    rated: TestClient,
) -> None:
    tenant = make_tenant(rated)
    run_id = create_run(rated, tenant)["id"]
    attempt(rated, run_id, 1, "H100", 8, DAY, DAY + timedelta(minutes=90))
    attempt(rated, run_id, 2, "a100", 4, DAY + timedelta(hours=2), DAY + timedelta(hours=2.5))
    for body in (
        rated.get(f"/v1/runs/{run_id}", headers=tenant.headers).json(),
        rated.get("/v1/runs", headers=tenant.headers).json()["data"][0],
    ):
        assert [(a["gpu_hours"], a["cost"]) for a in body["attempts"]] == [(12.0, 30.0), (2.0, 2.4)]
        assert body["usage"] == {
            "gpu_hours": 14.0,
            "cost": 32.4,
            "currency": "EUR",
            "by_gpu_type": {
                "H100": {"gpu_hours": 12.0, "cost": 30.0},
                "a100": {"gpu_hours": 2.0, "cost": 2.4},
            },
        }


def test_a_running_attempts_usage_grows_until_it_ends(rated: TestClient) -> None:
    tenant = make_tenant(rated)
    run_id = create_run(rated, tenant)["id"]
    attempt(rated, run_id, 1, "h100", 2, utcnow() - timedelta(hours=1), None)
    first = rated.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()["usage"]
    assert 2.0 <= first["gpu_hours"] < 2.01
    assert first["cost"] == pytest.approx(first["gpu_hours"] * 2.5, abs=1e-5)
    later = rated.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()["usage"]
    assert later["gpu_hours"] >= first["gpu_hours"]


def test_an_attempt_that_never_started_used_nothing(rated: TestClient) -> None:
    tenant = make_tenant(rated)
    run_id = create_run(rated, tenant)["id"]
    with session_scope(sessions(rated)) as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.attempt = 1
        open_attempt(session, run, Grant("gpu", "h100", 8, 0), utcnow())
    with session_scope(sessions(rated)) as session:
        close_attempt(
            session, run_id, 1, Ending(AttemptOutcome.CANCELLED, StatusReason.USER_CANCELLED, "x")
        )
    body = rated.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()
    assert body["usage"]["gpu_hours"] == 0.0
    with session_scope(sessions(rated)) as session:
        assert session.scalars(select(UsageDaily)).all() == []


def test_ending_an_attempt_rolls_its_usage_up_exactly_once(rated: TestClient) -> None:
    tenant = make_tenant(rated)
    run_id = create_run(rated, tenant)["id"]
    with session_scope(sessions(rated)) as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.attempt = 1
        open_attempt(session, run, Grant("gpu", "h100", 4, 0), utcnow())
        session.flush()
        mark_started(session, run_id, 1)
    ending = Ending(AttemptOutcome.SUCCEEDED, StatusReason.COMPLETED, "done")
    for _ in range(2):  # a second close changes nothing and adds nothing
        with session_scope(sessions(rated)) as session:
            close_attempt(session, run_id, 1, ending)
    with session_scope(sessions(rated)) as session:
        row = session.get(RunAttempt, (run_id, 1))
        assert row is not None
        assert row.started_at
        assert row.ended_at
        expected = 4 * (row.ended_at - row.started_at).total_seconds()
        rolled = session.scalars(select(UsageDaily)).all()
        assert [(r.project_id, r.gpu_type) for r in rolled] == [(tenant.project_id, "h100")]
        assert sum(r.gpu_seconds for r in rolled) == pytest.approx(expected)


def usage(client: TestClient, tenant: Tenant, **query: Any) -> Any:
    return client.get(f"/v1/orgs/{tenant.org_id}/usage", params=query, headers=tenant.headers)


def test_the_usage_report_groups_known_attempts_by_project_gpu_type_and_day(
    rated: TestClient,
) -> None:
    tenant = make_tenant(rated)
    other = rated.post("/v1/projects", json={"name": "vision"}, headers=tenant.headers).json()
    first = create_run(rated, tenant)["id"]
    second = create_run(rated, tenant, project="vision")["id"]
    # 8 x H100 from 23:00 to 01:00 (one hour each side of midnight), 2 x A100 for 3 hours.
    attempt(rated, first, 1, "h100", 8, DAY - timedelta(hours=1), DAY + timedelta(hours=1))
    attempt(rated, second, 1, "a100", 2, DAY + timedelta(hours=5), DAY + timedelta(hours=8))
    window = {"from": "2026-03-01", "to": "2026-04-01"}
    by_project = usage(rated, tenant, group_by="project", **window).json()
    assert by_project["currency"] == "EUR"
    assert by_project["total"] == {"gpu_hours": 22.0, "cost": 47.2}
    assert [(r["project"], r["gpu_hours"], r["cost"]) for r in by_project["data"]] == sorted(
        [("default", 16.0, 40.0), ("vision", 6.0, 7.2)],
        key=lambda r: {"default": tenant.project_id, "vision": other["id"]}[r[0]],
    )
    by_type = usage(rated, tenant, group_by="gpu_type", **window).json()["data"]
    assert [(r["gpu_type"], r["gpu_hours"]) for r in by_type] == [("a100", 6.0), ("h100", 16.0)]
    by_day = usage(rated, tenant, group_by="day", **window).json()["data"]
    assert [(r["day"], r["gpu_hours"], r["cost"]) for r in by_day] == [
        ("2026-03-09", 8.0, 20.0),
        ("2026-03-10", 14.0, 27.2),
    ]
    one_day = usage(rated, tenant, group_by="day", **{"from": "2026-03-10", "to": "2026-03-11"})
    assert one_day.json()["total"] == {"gpu_hours": 14.0, "cost": 27.2}


def test_the_usage_report_counts_running_attempts_live(rated: TestClient) -> None:
    tenant = make_tenant(rated)
    run_id = create_run(rated, tenant)["id"]
    attempt(rated, run_id, 1, "a100", 3, utcnow() - timedelta(minutes=20), None)
    today = utcnow().date()
    window = {
        "from": (today - timedelta(days=1)).isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
    }
    body = usage(rated, tenant, group_by="gpu_type", **window).json()
    assert 1.0 <= body["total"]["gpu_hours"] < 1.01


def test_usage_is_for_admins_of_the_org_and_a_project_key_sees_its_project(
    rated: TestClient,
) -> None:
    tenant, stranger = make_tenant(rated), make_tenant(rated)
    vision = rated.post("/v1/projects", json={"name": "vision"}, headers=tenant.headers).json()
    attempt(rated, create_run(rated, tenant)["id"], 1, "h100", 1, DAY, DAY + timedelta(hours=1))
    attempt(
        rated, create_run(rated, tenant, project="vision")["id"], 1, "h100", 1, DAY,
        DAY + timedelta(hours=2),
    )  # fmt: skip
    window = {"from": "2026-03-01", "to": "2026-04-01"}
    assert usage(rated, make_key(rated, tenant, "member"), **window).status_code == 403
    foreign = rated.get(f"/v1/orgs/{tenant.org_id}/usage", params=window, headers=stranger.headers)
    assert foreign.status_code == 404
    scoped = make_key(rated, tenant, "admin", project="vision")
    body = usage(rated, scoped, **window).json()
    assert body["project_id"] == vision["id"]
    assert [r["key"] for r in body["data"]] == [vision["id"]]
    assert body["total"]["gpu_hours"] == 2.0


def test_a_backwards_window_is_refused(rated: TestClient) -> None:
    tenant = make_tenant(rated)
    response = usage(rated, tenant, **{"from": "2026-03-02", "to": "2026-03-01"})
    assert response.status_code == 422


@pytest.fixture(params=["postgres", "sqlite"])
def either(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """The API with rates on a fresh database of each backend."""
    if request.param == "postgres":
        url = request.getfixturevalue("fresh_url")
    else:
        url = f"sqlite:///{tmp_path / 'trainport.db'}"
        migrate.upgrade(url)
    settings = Settings(database_url=url, key_touch_interval_seconds=0, gpu_hour_rates=RATES)
    app = create_app(settings)
    yield TestClient(app, raise_server_exceptions=False)
    app_engine(app).dispose()


def test_the_rollup_report_and_budget_alerts_agree_on_both_backends(either: TestClient) -> None:
    tenant = make_tenant(either)
    either.put(f"/v1/orgs/{tenant.org_id}/budget", json={"amount": 1}, headers=tenant.headers)
    run_id = create_run(either, tenant)["id"]
    with session_scope(sessions(either)) as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.attempt = 1
        open_attempt(session, run, Grant("gpu", "h100", 2, 0), utcnow())
        session.flush()
        mark_started(session, run_id, 1)
        row = session.get(RunAttempt, (run_id, 1))
        assert row is not None
        row.started_at = utcnow() - timedelta(hours=1)  # an hour of 2 x H100: 5.0 USD
    ending = Ending(AttemptOutcome.SUCCEEDED, StatusReason.COMPLETED, "done")
    for _ in range(2):
        with session_scope(sessions(either)) as session:
            close_attempt(session, run_id, 1, ending)
    shown = either.get(f"/v1/runs/{run_id}", headers=tenant.headers).json()["usage"]
    today = utcnow().date()
    window = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
    report = usage(either, tenant, group_by="gpu_type", **window).json()
    assert report["total"]["gpu_hours"] == pytest.approx(shown["gpu_hours"], abs=2e-6)
    assert report["data"][0]["gpu_type"] == "h100"
    assert 2.0 <= report["total"]["gpu_hours"] < 2.01
    card = RateCard.of(Settings(gpu_hour_rates=RATES))
    for expected in (2, 0):  # 80% and 100% once, then nothing
        with session_scope(sessions(either)) as session:
            assert len(budgets.record_alerts(session, utcnow(), card)) == expected
