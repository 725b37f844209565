"""`client.runs` against the live API: every method, the page iterator, the change feed, wait."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import trainport
from api.app_state import app_sessionmaker
from core.db import session_scope
from core.runs import service
from core.runs.spec import RunCreate
from core.tenants.service import authenticate
from tests.factories import Tenant, app_of
from tests.support.training import launch

SPEC: dict[str, Any] = {"image": "python:3.11-slim", "command": ["python", "-c", "print('hi')"]}


def make_runs(client: TestClient, tenant: Tenant, count: int) -> None:
    """`count` runs for `tenant`, made through the run service in one transaction (fast)."""
    app = app_of(client)
    with session_scope(app_sessionmaker(app)) as session:
        caller = authenticate(session, tenant.key, 0)
        for i in range(count):
            service.create_run(session, caller, RunCreate(name=f"bulk-{i}", **SPEC))


def test_create_returns_a_typed_pending_run_that_get_reads_back(sdk: trainport.Client) -> None:
    spec = trainport.RunSpec.from_dict({**SPEC, "labels": {"team": "nlp"}})
    run = sdk.runs.create(spec.with_overrides({"compute.nodes": 2}))
    assert run.id.startswith("run_")
    assert run.status == trainport.RunStatus.PENDING
    assert isinstance(run.created_at, datetime)
    assert run.spec["compute"]["nodes"] == 2
    assert sdk.runs.get(run.id) == run
    assert sdk.runs.get(run) == run


def test_create_accepts_keyword_fields_and_a_project(sdk: trainport.Client) -> None:
    project = sdk.projects.create("vision")
    run = sdk.runs.create(name="kw-run", project="vision", **SPEC)
    assert (run.name, run.project_id) == ("kw-run", project.id)


def test_create_with_one_idempotency_key_makes_one_run(sdk: trainport.Client) -> None:
    first = sdk.runs.create(SPEC, idempotency_key="retry-me")
    again = sdk.runs.create(SPEC, idempotency_key="retry-me")
    assert again.id == first.id
    assert [r.id for r in sdk.runs.list()] == [first.id]


def test_list_filters_by_status_label_and_name_prefix(sdk: trainport.Client) -> None:
    nlp = sdk.runs.create(SPEC, name="nlp-a", labels={"team": "nlp"})
    vision = sdk.runs.create(SPEC, name="vis-a", labels={"team": "vision", "gpu": "a100"})
    sdk.runs.cancel(vision)
    assert [r.id for r in sdk.runs.list(labels={"team": "nlp"})] == [nlp.id]
    assert [r.id for r in sdk.runs.list(labels=["gpu"])] == [vision.id]
    assert [r.id for r in sdk.runs.list(status="cancelled")] == [vision.id]
    assert {r.id for r in sdk.runs.list(status=["pending", "cancelled"])} == {nlp.id, vision.id}
    assert [r.id for r in sdk.runs.list(name_prefix="vis")] == [vision.id]


def test_the_page_iterator_walks_all_1000_runs_newest_first(
    client: TestClient, sdk_tenant: Tenant, sdk: trainport.Client
) -> None:
    make_runs(client, sdk_tenant, 1000)
    page = sdk.runs.list(limit=200)
    assert len(page.data) == 200
    assert page.has_more
    runs = list(page)
    assert len(runs) == 1000
    assert len({r.id for r in runs}) == 1000
    assert [r.id for r in runs] == sorted((r.id for r in runs), reverse=True)
    assert len(list(page.iter_pages())) == 5


def test_the_change_feed_returns_only_runs_changed_since_a_version(
    sdk: trainport.Client,
) -> None:
    old = sdk.runs.create(SPEC)
    feed = sdk.runs.list(changed_since=0)
    assert [r.id for r in feed] == [old.id]
    version = feed.resource_version
    assert version is not None
    new = sdk.runs.create(SPEC)
    changed = sdk.runs.list(changed_since=version)
    assert [r.id for r in changed] == [new.id]


def test_the_change_feed_iterator_pages_by_version(sdk: trainport.Client) -> None:
    made = [sdk.runs.create(SPEC).id for _ in range(5)]
    feed = sdk.runs.list(changed_since=0, limit=2)
    assert [r.id for r in feed] == made
    assert len(list(feed.iter_pages())) == 3


def test_update_edits_labels_and_priority_guarded_by_the_etag(sdk: trainport.Client) -> None:
    run = sdk.runs.create(SPEC)
    edited = sdk.runs.update(run, labels={"stage": "eval"}, priority="high", if_match=run.etag)
    assert (edited.labels, edited.priority) == ({"stage": "eval"}, "high")
    assert edited.resource_version > run.resource_version
    with pytest.raises(trainport.PreconditionFailed) as stale:
        sdk.runs.update(run, priority="low", if_match=run.resource_version)
    assert stale.value.status_code == 412
    assert sdk.runs.update(run, max_duration="2h").spec["scheduling"]["max_duration"] == 7200


def test_cancel_then_delete_and_the_run_is_gone(sdk: trainport.Client) -> None:
    run = sdk.runs.create(SPEC)
    with pytest.raises(trainport.Conflict) as active:
        sdk.runs.delete(run)
    assert active.value.code == "run_not_finished"
    cancelled = sdk.runs.cancel(run)
    assert cancelled.status == "cancelled"
    assert cancelled.is_terminal
    assert sdk.runs.cancel(run).status == "cancelled"  # idempotent
    sdk.runs.delete(run)
    with pytest.raises(trainport.NotFound):
        sdk.runs.get(run)


def test_events_iterate_the_run_history_oldest_first(sdk: trainport.Client) -> None:
    run = sdk.runs.create(SPEC)
    sdk.runs.update(run, labels={"a": "1"})
    sdk.runs.update(run, labels={"a": "2"})
    sdk.runs.cancel(run)
    events = list(sdk.runs.events(run, limit=1))
    assert len(events) >= 4
    assert all(e.run_id == run.id for e in events)
    assert [e.resource_version for e in events] == sorted(e.resource_version for e in events)
    assert events[-1].to_status == "cancelled"


def test_wait_wakes_on_cancel_through_the_long_poll(api_url: str, sdk_tenant: Tenant) -> None:
    polling = threading.Event()

    def note_long_poll(request: httpx.Request) -> None:
        if "wait" in request.url.params:
            polling.set()

    hooks = {"request": [note_long_poll]}
    with (
        httpx.Client(event_hooks=hooks) as http,
        trainport.Client(base_url=api_url, api_key=sdk_tenant.key, http_client=http) as waiter,
        trainport.Client(base_url=api_url, api_key=sdk_tenant.key) as other,
        ThreadPoolExecutor(1) as pool,
    ):
        run = other.runs.create(SPEC)
        started = time.monotonic()
        waited = pool.submit(waiter.runs.wait, run.id, timeout=30)
        assert polling.wait(10), "wait() never issued a long-poll"
        other.runs.cancel(run)
        finished = waited.result(timeout=15)
    assert finished.status == "cancelled"
    assert time.monotonic() - started < 10  # woken by the change, not by the 60 s window


def test_wait_returns_at_once_when_the_run_is_already_in_a_wanted_status(
    sdk: trainport.Client,
) -> None:
    run = sdk.runs.create(SPEC)
    assert sdk.runs.wait(run, until="pending").id == run.id
    sdk.runs.cancel(run)
    assert sdk.runs.wait(run, until={"succeeded"}).status == "cancelled"  # terminal: settled


def test_wait_raises_wait_timeout_when_the_run_does_not_finish(sdk: trainport.Client) -> None:
    run = sdk.runs.create(SPEC)
    with pytest.raises(trainport.WaitTimeout) as timeout:
        sdk.runs.wait(run, timeout=1)
    assert isinstance(timeout.value, TimeoutError)
    assert timeout.value.run.id == run.id


def test_attempts_are_typed_models(sdk: trainport.Client, client: TestClient, api_url: str) -> None:
    run = sdk.runs.create(SPEC)
    launch(client, run.id, api_url)
    attempts = sdk.runs.get(run).attempts
    assert [type(a) for a in attempts] == [trainport.Attempt]
    first = attempts[0]
    assert (first.attempt, first.cluster, first.outcome, first.ended_at) == (1, "local", None, None)
    assert isinstance(first.admitted_at, datetime)


def test_a_run_is_found_by_a_name_only_it_has(sdk: trainport.Client) -> None:
    solo = sdk.runs.create(SPEC, name="solo")
    twins = [sdk.runs.create(SPEC, name="twin") for _ in range(2)]
    assert sdk.runs.get("solo").id == solo.id
    assert sdk.runs.resolve("solo") == solo.id
    assert [r.id for r in sdk.runs.list(name="twin")] == [t.id for t in reversed(twins)]
    with pytest.raises(trainport.AmbiguousRunName) as ambiguous:
        sdk.runs.get("twin")
    assert all(t.id in str(ambiguous.value) for t in twins)
    assert {r.id for r in ambiguous.value.candidates} == {t.id for t in twins}
    with pytest.raises(trainport.RunNameNotFound):
        sdk.runs.cancel("nobody")
    assert sdk.runs.cancel("solo").status == "cancelled"
    assert next(e.kind for e in sdk.runs.events("solo")) == "created"
