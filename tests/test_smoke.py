"""The happy path on both backends: submit a run, read it back, find it listed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.factories import create_run, make_tenant


def test_a_submitted_run_is_pending_and_listed(any_client: TestClient) -> None:
    tenant = make_tenant(any_client)
    run = create_run(any_client, tenant, labels={"team": "nlp"})
    assert run["status"] == "pending"
    assert run["id"].startswith("run_")
    fetched = any_client.get(f"/v1/runs/{run['id']}", headers=tenant.headers).json()
    assert fetched == run
    listed = any_client.get("/v1/runs", headers=tenant.headers).json()
    assert [r["id"] for r in listed["data"]] == [run["id"]]
