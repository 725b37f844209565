"""`client.runs.logs` against the live logs route, reading what an executor wrote to the store."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

import trainport
from core.log_archive import LogArchive
from core.logs import LogKey, format_lines
from tests.factories import write_log
from tests.support.training import launch

SPEC = {"image": "python:3.11-slim", "command": ["python", "-c", "print('hi')"]}


def store(archive: LogArchive, run_id: str, *lines: str, attempt: int = 0, rank: int = 0) -> None:
    write_log(archive, run_id, attempt, rank, *lines)


def test_logs_yield_each_line_with_its_time_stream_and_attempt(
    sdk: trainport.Client, archive: LogArchive
) -> None:
    run = sdk.runs.create(SPEC)
    store(archive, run.id, "step 1", "step 2", "done")
    lines = list(sdk.runs.logs(run))
    assert [str(line) for line in lines] == ["step 1", "step 2", "done"]
    assert {(line.stream, line.attempt, line.rank) for line in lines} == {("stdout", 0, 0)}
    assert all(line.timestamp is not None for line in lines)
    assert [line.text for line in sdk.runs.logs(run, tail=1)] == ["done"]


def test_logs_pick_the_rank_and_attempt_asked_for(
    sdk: trainport.Client, archive: LogArchive
) -> None:
    run = sdk.runs.create(SPEC)
    store(archive, run.id, "first try", attempt=0)
    store(archive, run.id, "second try, rank 0", attempt=1)
    store(archive, run.id, "second try, rank 1", attempt=1, rank=1)
    assert [line.text for line in sdk.runs.logs(run)] == ["second try, rank 0"]
    assert [line.text for line in sdk.runs.logs(run, rank=1)] == ["second try, rank 1"]
    assert [line.text for line in sdk.runs.logs(run, attempt=0)] == ["first try"]
    with pytest.raises(trainport.NotFound):
        list(sdk.runs.logs(run, rank=7))


def test_following_streams_new_lines_until_the_writer_is_done(
    sdk: trainport.Client, archive: LogArchive
) -> None:
    run = sdk.runs.create(SPEC)
    key = LogKey(run.id, 0, 0)
    archive.append(key, format_lines("stdout", "before", ()), expected="", cursor="1")
    seen = []
    for line in sdk.runs.logs(run, follow=True):
        seen.append((line.stream, line.text))
        if line.text == "before":  # stored while the stream is open
            archive.append(key, format_lines("stderr", "after", ()), expected="1", cursor="2")
            archive.finish(key)
    assert seen == [("stdout", "before"), ("stderr", "after")]


def test_following_right_after_create_waits_for_the_first_attempt(
    sdk: trainport.Client, client: TestClient, api_url: str, archive: LogArchive
) -> None:
    """As `trainport run --follow` does: no NotFound while the run has not started yet."""
    run = sdk.runs.create(SPEC)
    seen: list[str] = []
    failed: list[BaseException] = []

    def follow() -> None:
        try:
            seen.extend(line.text for line in sdk.runs.logs(run, follow=True))
        except BaseException as exc:
            failed.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.5)  # the follower asks while the run is still pending
    launch(client, run.id, api_url)  # a status change: the follower's long-poll wakes
    write_log(archive, run.id, 1, 0, "first line", "last line")
    follower.join(timeout=30)
    assert (failed, seen) == ([], ["first line", "last line"])


def test_following_a_run_that_ended_without_an_attempt_says_so(sdk: trainport.Client) -> None:
    run = sdk.runs.cancel(sdk.runs.create(SPEC))
    with pytest.raises(trainport.NotFound, match="has no log yet"):
        list(sdk.runs.logs(run, follow=True))
