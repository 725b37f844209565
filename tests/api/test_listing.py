"""Listing runs: keyset pages newest first, and every filter narrowing the result."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi.testclient import TestClient

from core.runs.states import RunStatus
from tests.api.expect import advance
from tests.factories import Tenant, create_run

MANY = 230


def _all_pages(client: TestClient, tenant: Tenant, **query: Any) -> tuple[list[str], int]:
    """Every id the list yields, following cursors, and how many pages that took."""
    ids: list[str] = []
    cursor, pages = None, 0
    while True:
        params = {**query, **({"after": cursor} if cursor else {})}
        page = client.get(f"/v1/runs?{urlencode(params, doseq=True)}", headers=tenant.headers)
        assert page.status_code == 200, page.text
        body = page.json()
        ids += [run["id"] for run in body["data"]]
        pages += 1
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return ids, pages
        cursor = body["next_cursor"]


def _names(client: TestClient, tenant: Tenant, **query: Any) -> set[str]:
    page = client.get(f"/v1/runs?{urlencode(query, doseq=True)}", headers=tenant.headers)
    assert page.status_code == 200, page.text
    return {run["name"] for run in page.json()["data"]}


def test_keyset_pages_return_every_run_once_newest_first(
    client: TestClient, tenant: Tenant
) -> None:
    created = [create_run(client, tenant)["id"] for _ in range(MANY)]
    listed, pages = _all_pages(client, tenant, limit=50)
    assert listed == created[::-1]
    assert pages == 5


def test_a_page_is_stable_while_new_runs_arrive(client: TestClient, tenant: Tenant) -> None:
    older = [create_run(client, tenant)["id"] for _ in range(4)]
    first = client.get("/v1/runs?limit=2", headers=tenant.headers).json()
    create_run(client, tenant)  # arrives between the pages: newer than the cursor
    rest = client.get(f"/v1/runs?limit=10&after={first['next_cursor']}", headers=tenant.headers)
    assert [r["id"] for r in first["data"] + rest.json()["data"]] == older[::-1]


def test_status_filter_is_repeatable(client: TestClient, tenant: Tenant) -> None:
    create_run(client, tenant, name="p")
    queued = create_run(client, tenant, name="q")
    cancelled = create_run(client, tenant, name="c")
    advance(client, queued["id"], RunStatus.QUEUED)
    client.post(f"/v1/runs/{cancelled['id']}/cancel", headers=tenant.headers)
    assert _names(client, tenant, status="cancelled") == {"c"}
    assert _names(client, tenant, status=["pending", "queued"]) == {"p", "q"}


def test_project_filter_takes_a_name_or_an_id(client: TestClient, tenant: Tenant) -> None:
    lab = client.post("/v1/projects", json={"name": "lab"}, headers=tenant.headers).json()
    create_run(client, tenant, name="in-default")
    create_run(client, tenant, name="in-lab", project="lab")
    assert _names(client, tenant, project="lab") == {"in-lab"}
    assert _names(client, tenant, project=lab["id"]) == {"in-lab"}
    assert _names(client, tenant, project="default") == {"in-default"}


def test_label_selector_matches_equality_and_existence(client: TestClient, tenant: Tenant) -> None:
    create_run(client, tenant, name="both", labels={"team": "nlp", "tier": "gold"})
    create_run(client, tenant, name="nlp-only", labels={"team": "nlp"})
    create_run(client, tenant, name="vision", labels={"team": "vision", "tier": "gold"})
    assert _names(client, tenant, labels="team=nlp") == {"both", "nlp-only"}
    assert _names(client, tenant, labels="tier") == {"both", "vision"}
    assert _names(client, tenant, labels="team=nlp,tier") == {"both"}
    assert _names(client, tenant, labels="team=audio") == set()


def test_label_filter_follows_a_label_patch(client: TestClient, tenant: Tenant) -> None:
    run = create_run(client, tenant, name="moved", labels={"team": "nlp"})
    client.patch(
        f"/v1/runs/{run['id']}", json={"labels": {"team": "vision"}}, headers=tenant.headers
    )
    assert _names(client, tenant, labels="team=nlp") == set()
    assert _names(client, tenant, labels="team=vision") == {"moved"}


def test_name_prefix_filter(client: TestClient, tenant: Tenant) -> None:
    for name in ["sweep-a-1", "sweep-a-2", "sweep-b-1", "other"]:
        create_run(client, tenant, name=name)
    assert _names(client, tenant, name_prefix="sweep-a") == {"sweep-a-1", "sweep-a-2"}
    assert _names(client, tenant, name_prefix="sweep") == {"sweep-a-1", "sweep-a-2", "sweep-b-1"}


def test_name_filter_matches_the_whole_name_only(client: TestClient, tenant: Tenant) -> None:
    made = [create_run(client, tenant, name=n)["id"] for n in ["twin", "twin", "twin-b"]]
    listed = client.get("/v1/runs", params={"name": "twin"}, headers=tenant.headers).json()
    assert [run["id"] for run in listed["data"]] == made[1::-1]  # names repeat; newest first
    assert _names(client, tenant, name="twin-b") == {"twin-b"}
    assert _names(client, tenant, name="twi") == set()


def test_created_after_and_before_bound_the_list(client: TestClient, tenant: Tenant) -> None:
    first, middle, last = (create_run(client, tenant, name=n) for n in ["first", "middle", "last"])
    after_first = {"created_after": first["created_at"]}
    before_last = {"created_before": last["created_at"]}
    assert _names(client, tenant, **after_first) == {"middle", "last"}
    assert _names(client, tenant, **before_last) == {"first", "middle"}
    assert _names(client, tenant, **after_first, **before_last) == {middle["name"]}


def test_filters_page_too(client: TestClient, tenant: Tenant) -> None:
    wanted = [create_run(client, tenant, labels={"keep": "yes"})["id"] for _ in range(5)]
    create_run(client, tenant, labels={"keep": "no"})
    listed, pages = _all_pages(client, tenant, labels="keep=yes", limit=2)
    assert listed == wanted[::-1]
    assert pages == 3
