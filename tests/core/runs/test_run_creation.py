"""`POST /v1/runs` on PostgreSQL is one statement on the event loop (core/runs/creation.py).

An app with `async_reads=False` creates through the ORM (`service.create_run`) on the same
database; both must write the same rows, answer the same documents and refuse the same requests.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.app_state import app_settings
from tests.api.expect import assert_problem
from tests.factories import Tenant, app_of, make_key
from tests.support.training import admit

# What differs between two creates of one body: identity, time and order.
_UNIQUE = {"id", "name", "created_at", "updated_at", "resource_version"}
BODY = {
    "image": "ghcr.io/acme/train:1",
    "command": ["python", "train.py"],
    "env": {"WANDB_PROJECT": "x", "TOKEN": {"secret": "hf-token"}},
    "compute": {"nodes": 2, "gpus_per_node": 4, "gpu_type": "a100", "memory": "64Gi"},
    "scheduling": {"priority": "high", "max_duration": "2h"},
    "labels": {"team": "nlp", "exp": "e7"},
}


def _dsn(client: TestClient) -> str:
    app = app_of(client)
    url = make_url(app_settings(app).database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _stored(client: TestClient, run_id: str) -> dict[str, Any]:
    """What the create wrote: the run's row, its labels, events and outbox task."""
    with psycopg.connect(_dsn(client)) as conn:
        columns = "org_id, project_id, spec, status, status_reason, priority, attempt, labels, "
        columns += "created_by, queued_at, started_at, finished_at, resource_version"
        run = conn.execute(f"SELECT {columns} FROM runs WHERE id = %s", [run_id]).fetchone()
        assert run is not None
        labels = conn.execute(
            "SELECT key, value, org_id FROM run_labels WHERE run_id = %s ORDER BY key", [run_id]
        ).fetchall()
        events = conn.execute(
            "SELECT kind, from_status, to_status, reason, actor, org_id, resource_version "
            "FROM run_events WHERE run_id = %s ORDER BY id",
            [run_id],
        ).fetchall()
        tasks = conn.execute(
            "SELECT task FROM outbox WHERE payload = %s::jsonb", [f'{{"run_id": "{run_id}"}}']
        ).fetchall()
    *row, version = run
    spec = dict(row[2])
    spec.pop("name")
    row[2] = spec
    assert [event[-1] for event in events] == [version]  # the event carries the run's version
    return {"run": row, "labels": labels, "events": [e[:-1] for e in events], "tasks": tasks}


def _shown(response: Any) -> dict[str, Any]:
    document: dict[str, Any] = response.json()
    return {k: v for k, v in document.items() if k not in _UNIQUE} | {
        "spec": {k: v for k, v in document["spec"].items() if k != "name"}
    }


def test_the_event_loop_create_writes_and_answers_what_the_orm_create_does(
    api: TestClient, threadpool_api: TestClient, org: Tenant
) -> None:
    made = [c.post("/v1/runs", json=BODY, headers=org.headers) for c in (api, threadpool_api)]
    assert [r.status_code for r in made] == [201, 201], [r.text for r in made]
    fast, orm = (r.json() for r in made)
    assert _shown(made[0]) == _shown(made[1])
    assert fast["queue"]["reason"] == "submitted"
    assert fast["attempts"] == []
    assert fast["name"].startswith("run-")
    assert orm["name"].startswith("run-")
    assert fast["spec"]["name"] == fast["name"]
    assert _stored(api, fast["id"]) == _stored(api, orm["id"])
    assert made[0].headers["Location"] == f"/v1/runs/{fast['id']}"
    # What the create answered is what a read answers.
    for created in made:
        read = api.get(created.headers["Location"], headers=org.headers)
        assert read.json() == created.json()
        assert read.headers["ETag"] == created.headers["ETag"]


def test_a_run_created_on_the_event_loop_is_admitted_like_any_other(
    api: TestClient, org: Tenant
) -> None:
    created = api.post("/v1/runs", json=BODY, headers=org.headers).json()
    admit(api, created["id"])
    read = api.get(f"/v1/runs/{created['id']}", headers=org.headers).json()
    assert read["status"] == "queued"
    assert read["resource_version"] > created["resource_version"]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"role": "viewer"}, 403, "forbidden"),
        ({"body": {"project": "no-such-project"}}, 404, "not_found"),
        ({"idempotency_key": "x" * 256}, 422, "validation_error"),
        ({"secret": "tp_" + "x" * 43}, 401, "unauthenticated"),
    ],
)
def test_both_creates_refuse_the_same_requests(
    api: TestClient,
    threadpool_api: TestClient,
    org: Tenant,
    change: dict[str, Any],
    status: int,
    code: str,
) -> None:
    key = make_key(api, org, change["role"]).key if "role" in change else org.key
    headers = {"Authorization": f"Bearer {change.get('secret', key)}"}
    if "idempotency_key" in change:
        headers["Idempotency-Key"] = change["idempotency_key"]
    body = {**BODY, **change.get("body", {})}
    for client in (api, threadpool_api):
        assert_problem(client.post("/v1/runs", json=body, headers=headers), status, code)


def test_a_project_scoped_key_creates_in_its_project_only(
    api: TestClient, threadpool_api: TestClient, org: Tenant
) -> None:
    project = api.post("/v1/projects", json={"name": "vision"}, headers=org.headers).json()
    scoped = make_key(api, org, "member", project="vision")
    for client in (api, threadpool_api):
        made = client.post("/v1/runs", json=BODY, headers=scoped.headers)
        assert made.status_code == 201, made.text
        assert made.json()["project_id"] == project["id"]
        elsewhere = client.post(
            "/v1/runs", json={**BODY, "project": "default"}, headers=scoped.headers
        )
        assert_problem(elsewhere, 403, "forbidden")


def test_a_key_taken_on_one_path_replays_on_the_other(
    api: TestClient, threadpool_api: TestClient, org: Tenant
) -> None:
    for first, second in ((api, threadpool_api), (threadpool_api, api)):
        headers = {**org.headers, "Idempotency-Key": f"retry-{id(first)}"}
        made = first.post("/v1/runs", json=BODY, headers=headers)
        again = second.post("/v1/runs", json=BODY, headers=headers)
        assert made.status_code == again.status_code == 201
        assert "Idempotent-Replayed" not in made.headers
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == made.json()["id"]
        other = second.post("/v1/runs", json={**BODY, "labels": {}}, headers=headers)
        assert_problem(other, 422, "idempotency_key_reused")


def test_an_expired_key_is_taken_over_by_a_new_run(api: TestClient, org: Tenant) -> None:
    headers = {**org.headers, "Idempotency-Key": "nightly"}
    first = api.post("/v1/runs", json=BODY, headers=headers).json()
    with psycopg.connect(_dsn(api)) as conn:
        conn.execute(
            "UPDATE idempotency_records SET expires_at = now() - interval '1 hour' "
            "WHERE org_id = %s AND key = 'nightly'",
            [org.org_id],
        )
    second = api.post("/v1/runs", json={**BODY, "labels": {}}, headers=headers)
    assert second.status_code == 201, second.text
    assert "Idempotent-Replayed" not in second.headers
    assert second.json()["id"] != first["id"]
    replay = api.post("/v1/runs", json={**BODY, "labels": {}}, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == second.json()["id"]
    with psycopg.connect(_dsn(api)) as conn:
        records = conn.execute(
            "SELECT run_id FROM idempotency_records WHERE org_id = %s", [org.org_id]
        ).fetchall()
    assert records == [(second.json()["id"],)]
