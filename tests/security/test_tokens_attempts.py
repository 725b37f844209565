"""A run token speaks for one attempt: once that attempt has ended it opens nothing, on every
route that accepts a run caller, also while the run waits (queued) for its next attempt and so
still carries the ended attempt's number (issue 12).

The routes are the app's own table (tests/api/routes.py), so a route added later is probed too.
"""

from __future__ import annotations

from collections import defaultdict

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from api.app import create_app
from api.edge import CallerKind
from api.routing import caller_kind
from core.runs.attempts import AttemptOutcome
from core.settings import Settings
from tests.api.routes import ROUTES, fill
from tests.factories import Tenant
from tests.support.training import Started, create_dataset, end_attempt, start, submit, upload

API_ROUTES = [(method, path) for method, path in ROUTES if path.startswith("/v1/")]


def run_caller_routes() -> set[tuple[str, str]]:
    """(method, path) of the routes whose caller may be a run token: those that take a
    `RunCaller`, and `GET /v1/runs/{run_id}`, which authenticates inside its own read."""
    app = create_app(Settings(database_url="sqlite://"))  # never connects: routes only
    found = {("GET", "/v1/runs/{run_id}")}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and caller_kind(route.dependant) is CallerKind.KEY_OR_RUN:
            found |= {(method, str(context.path)) for method in context.methods or ()}
    return found


def _ids(run: Started) -> defaultdict[str, str]:
    """A value for every path parameter: the run's own where it has one, else harmless."""
    ids: defaultdict[str, str] = defaultdict(lambda: "x-1")
    ids |= {"run_id": run.run_id, "dataset": "corpus", "version": "1", "file_path": "a.txt"}
    ids |= {"step": "1"}
    return ids


def _statuses(client: TestClient, run: Started, token: str) -> dict[tuple[str, str], int]:
    headers = {"Authorization": f"Bearer {token}"}
    ids = _ids(run)
    return {
        (method, path): client.request(
            method, fill(path, ids), json={}, headers=headers
        ).status_code
        for method, path in API_ROUTES
    }


def _refused(statuses: dict[tuple[str, str], int]) -> set[tuple[str, str]]:
    return {route for route, status in statuses.items() if status == 401}


def _running_with_a_dataset(client: TestClient, tenant: Tenant) -> Started:
    create_dataset(client, tenant, "corpus")
    upload(client, tenant, "corpus", {"a.txt": b"a"})
    spec = {"data": {"datasets": ["corpus@1"]}, "scheduling": {"max_retries": 1}}
    return start(client, submit(client, tenant, **spec))


def test_a_live_token_is_accepted_exactly_on_the_run_caller_routes(
    client: TestClient, tenant: Tenant
) -> None:
    run = _running_with_a_dataset(client, tenant)
    accepted = set(API_ROUTES) - _refused(_statuses(client, run, run.token))
    assert accepted == run_caller_routes()
    # The ones the runtime needs (docs/runtime-api.md), lest the table lose them unnoticed.
    assert {
        ("GET", "/v1/runs/{run_id}"),
        ("POST", "/v1/runs/{run_id}/metrics"),
        ("POST", "/v1/runs/{run_id}/heartbeat"),
        ("POST", "/v1/runs/{run_id}/checkpoints"),
        ("GET", "/v1/datasets/{dataset}/versions/{version}/manifest"),
        ("POST", "/v1/runs/{run_id}/storage/presign"),
    } <= accepted


def test_an_ended_attempts_token_is_refused_while_its_run_waits_to_retry(
    client: TestClient, tenant: Tenant
) -> None:
    run = _running_with_a_dataset(client, tenant)
    assert end_attempt(client, run.run_id, AttemptOutcome.SYSTEM_FAILED) == "queued"
    statuses = _statuses(client, run, run.token)
    assert _refused(statuses) == set(API_ROUTES), {r: s for r, s in statuses.items() if s != 401}
    headers = run.headers
    base = f"/v1/runs/{run.run_id}"
    # The long poll and the conditional read authenticate on paths of their own.
    assert client.get(base, params={"wait": 1}, headers=headers).status_code == 401
    conditional = {**headers, "If-None-Match": '"1"'}
    assert client.get(base, headers=conditional).status_code == 401


def test_the_next_attempt_gets_a_token_of_its_own(client: TestClient, tenant: Tenant) -> None:
    run = _running_with_a_dataset(client, tenant)
    end_attempt(client, run.run_id, AttemptOutcome.SYSTEM_FAILED)
    second = start(client, run.run_id)
    assert second.attempt == run.attempt + 1
    assert _refused(_statuses(client, run, run.token)) == set(API_ROUTES)
    accepted = set(API_ROUTES) - _refused(_statuses(client, second, second.token))
    assert accepted == run_caller_routes()
