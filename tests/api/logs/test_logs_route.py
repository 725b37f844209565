"""`GET /v1/runs/{id}/logs`: text and NDJSON, tail, default attempt, 404s and tenancy."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.log_archive import Head, LogArchive
from core.logs import LogKey, format_lines
from core.runs.states import RunStatus
from core.settings import Settings
from tests.api.expect import advance
from tests.factories import Tenant, create_run, log_archive, make_tenant, write_log


@pytest.fixture(scope="module")
def logs_client(postgres_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=postgres_url, key_touch_interval_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def archive(postgres_url: str) -> LogArchive:
    return log_archive(postgres_url)


@pytest.fixture
def owner(logs_client: TestClient) -> Tenant:
    return make_tenant(logs_client)


def texts(body: str) -> list[str]:
    return [line.split(" ", 2)[2] for line in body.splitlines()]


def test_a_finished_attempts_log_is_served_as_timestamped_text(
    logs_client: TestClient, owner: Tenant, archive: LogArchive
) -> None:
    run = create_run(logs_client, owner)
    write_log(archive, run["id"], 1, 0, "one", "two", "three")

    response = logs_client.get(f"/v1/runs/{run['id']}/logs", headers=owner.headers)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-trainport-attempt"] == "1"
    assert texts(response.text) == ["one", "two", "three"]
    assert all(line[:4].isdigit() and " stdout " in line for line in response.text.splitlines())


def test_tail_rank_and_the_latest_attempt_by_default(
    logs_client: TestClient, owner: Tenant, archive: LogArchive
) -> None:
    run = create_run(logs_client, owner)
    write_log(archive, run["id"], 1, 0, "first attempt")
    write_log(archive, run["id"], 2, 0, *[f"line {i}" for i in range(10)])
    write_log(archive, run["id"], 2, 1, "rank one")
    url = f"/v1/runs/{run['id']}/logs"

    latest = logs_client.get(url, params={"tail": 2}, headers=owner.headers)
    earlier = logs_client.get(url, params={"attempt": 1}, headers=owner.headers)
    rank_one = logs_client.get(url, params={"rank": 1}, headers=owner.headers)

    assert (latest.headers["x-trainport-attempt"], texts(latest.text)) == (
        "2",
        ["line 8", "line 9"],
    )
    assert texts(earlier.text) == ["first attempt"]
    assert texts(rank_one.text) == ["rank one"]


def test_ndjson_when_asked_for(logs_client: TestClient, owner: Tenant, archive: LogArchive) -> None:
    run = create_run(logs_client, owner)
    write_log(archive, run["id"], 1, 0, "hello world")

    response = logs_client.get(
        f"/v1/runs/{run['id']}/logs",
        headers={**owner.headers, "Accept": "application/x-ndjson"},
    )

    assert response.headers["content-type"].startswith("application/x-ndjson")
    [line] = [json.loads(text) for text in response.text.splitlines()]
    assert (line["stream"], line["text"]) == ("stdout", "hello world")
    assert line["time"].endswith("Z")


def test_missing_logs_are_a_404_problem(
    logs_client: TestClient, owner: Tenant, archive: LogArchive
) -> None:
    run = create_run(logs_client, owner)
    url = f"/v1/runs/{run['id']}/logs"

    no_logs_yet = logs_client.get(url, headers=owner.headers)
    write_log(archive, run["id"], 1, 0, "x")
    no_such_attempt = logs_client.get(url, params={"attempt": 2}, headers=owner.headers)
    no_such_rank = logs_client.get(url, params={"rank": 3}, headers=owner.headers)
    no_such_run = logs_client.get("/v1/runs/run_missing/logs", headers=owner.headers)

    for response in (no_logs_yet, no_such_attempt, no_such_rank, no_such_run):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"


def test_another_orgs_run_logs_are_not_found(
    logs_client: TestClient, owner: Tenant, archive: LogArchive
) -> None:
    run = create_run(logs_client, owner)
    write_log(archive, run["id"], 1, 0, "private")
    stranger = make_tenant(logs_client)

    response = logs_client.get(f"/v1/runs/{run['id']}/logs", headers=stranger.headers)

    assert response.status_code == 404
    assert "private" not in response.text


def test_follow_ends_once_the_run_is_finished_even_if_its_writer_never_closed(
    logs_client: TestClient, owner: Tenant, archive: LogArchive
) -> None:
    run = create_run(logs_client, owner)
    key = LogKey(run["id"], 1, 0)  # a writer stores a line, then dies without finishing
    archive.append(key, format_lines("stdout", "before the crash", ()), expected="", cursor="1")
    cancelled = logs_client.post(f"/v1/runs/{run['id']}/cancel", headers=owner.headers)
    assert cancelled.json()["status"] == "cancelled"

    response = logs_client.get(
        f"/v1/runs/{run['id']}/logs", params={"follow": True}, headers=owner.headers
    )

    assert response.status_code == 200
    assert texts(response.text) == ["before the crash"]


def test_deleting_a_run_deletes_its_logs(
    logs_client: TestClient, owner: Tenant, archive: LogArchive
) -> None:
    run = create_run(logs_client, owner)
    write_log(archive, run["id"], 1, 0, "soon gone")
    logs_client.post(f"/v1/runs/{run['id']}/cancel", headers=owner.headers)

    deleted = logs_client.delete(f"/v1/runs/{run['id']}", headers=owner.headers)

    assert deleted.status_code == 204
    assert archive.head(LogKey(run["id"], 1, 0)) == Head()
    assert not archive.page(LogKey(run["id"], 1, 0), 0)[0]


def test_following_a_started_attempt_waits_for_its_first_line(
    logs_client: TestClient, owner: Tenant, archive: LogArchive
) -> None:
    """The demo's race: a run reads `running` before its rank's first line reaches the
    database. A follower then waits for the log instead of getting a 404."""
    run = create_run(logs_client, owner)
    advance(logs_client, run["id"], RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)
    url = f"/v1/runs/{run['id']}/logs"
    assert logs_client.get(url, headers=owner.headers).status_code == 404  # nothing to read yet

    def write_then_finish() -> None:
        time.sleep(0.5)  # after the follower has asked
        write_log(archive, run["id"], 1, 0, "late first line")
        advance(logs_client, run["id"], RunStatus.SUCCEEDED)

    writer = threading.Thread(target=write_then_finish)
    writer.start()
    response = logs_client.get(url, params={"follow": True}, headers=owner.headers)
    writer.join()

    assert response.status_code == 200
    assert response.headers["x-trainport-attempt"] == "1"
    assert texts(response.text) == ["late first line"]
    beyond = logs_client.get(url, params={"follow": True, "rank": 1}, headers=owner.headers)
    assert beyond.status_code == 404  # one rank: rank 1 will never write


def test_following_a_run_that_has_not_started_is_still_a_clear_404(
    logs_client: TestClient, owner: Tenant
) -> None:
    run = create_run(logs_client, owner)

    response = logs_client.get(
        f"/v1/runs/{run['id']}/logs", params={"follow": True}, headers=owner.headers
    )

    assert response.status_code == 404
    assert "none of its attempts has started" in response.json()["detail"]
