"""Retries against a scripted transport (httpx.MockTransport): which failures are retried, how
long the client waits, Retry-After, the one Idempotency-Key, and log streams that resume.

Waits are recorded by an injected `sleep`, never slept; jitter is injected to pin the bounds.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

import trainport
from trainport.retries import RetryPolicy, retry_after_seconds

BASE = "http://trainport.test"
RUN = {
    "id": "run_1",
    "name": "r",
    "project_id": "prj_1",
    "status": "pending",
    "resource_version": 1,
    "created_at": "2025-01-01T00:00:00Z",
}
Step = httpx.Response | Exception


def problem(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"status": status, "code": code, "title": code, "detail": f"{code} happened"}
    return httpx.Response(
        status, json=body, headers={"content-type": "application/problem+json", **(headers or {})}
    )


class Script:
    """Answers requests with the next scripted step (a response, or an exception to raise)."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def make_client(
    script: Callable[[httpx.Request], httpx.Response],
    sleeps: list[float],
    **policy: Any,
) -> trainport.Client:
    return trainport.Client(
        base_url=BASE,
        api_key="tp_test",
        http_client=httpx.Client(transport=httpx.MockTransport(script)),
        retry_policy=RetryPolicy(jitter=lambda: 1.0, **policy),
        sleep=sleeps.append,
    )


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    top = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=lambda: 1.0)
    bottom = RetryPolicy(initial_delay=0.5, max_delay=8.0, jitter=lambda: 0.0)
    assert [top.backoff(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert [bottom.backoff(n) for n in range(7)] == [0.0] * 7
    drawn = RetryPolicy(initial_delay=0.5, max_delay=8.0)
    for n in range(7):
        samples = [drawn.backoff(n) for _ in range(200)]
        assert all(0.0 <= s <= drawn.backoff_cap(n) for s in samples)
        assert len(set(samples)) > 1  # jittered, not a fixed schedule


def test_server_errors_are_retried_with_growing_waits_then_succeed() -> None:
    sleeps: list[float] = []
    script = Script(problem(503, "unavailable"), problem(500, "internal_error"),
                    problem(502, "bad_gateway"), httpx.Response(200, json=RUN))  # fmt: skip
    run = make_client(script, sleeps, max_retries=3).runs.get("run_1")
    assert run.id == "run_1"
    assert len(script.requests) == 4
    assert sleeps == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [408, 429, 500, 503, 504])
def test_each_retryable_status_is_retried(status: int) -> None:
    sleeps: list[float] = []
    script = Script(problem(status, "try_again"), httpx.Response(200, json=RUN))
    make_client(script, sleeps).runs.get("run_1")
    assert len(script.requests) == 2


def test_retry_after_in_seconds_is_honoured() -> None:
    sleeps: list[float] = []
    script = Script(
        problem(429, "rate_limited", {"Retry-After": "7"}), httpx.Response(200, json=RUN)
    )
    make_client(script, sleeps).runs.get("run_1")
    assert sleeps == [7.0]


def test_retry_after_as_an_http_date_is_honoured() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(date, now) == 30.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0
    assert retry_after_seconds("soon", now) is None
    sleeps: list[float] = []
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    script = Script(problem(503, "busy", {"Retry-After": later}), httpx.Response(200, json=RUN))
    make_client(script, sleeps).runs.get("run_1")
    assert len(sleeps) == 1
    assert 17.0 <= sleeps[0] <= 20.0


def test_a_retry_after_beyond_the_limit_ends_the_retries() -> None:
    sleeps: list[float] = []
    script = Script(problem(503, "maintenance", {"Retry-After": "3600"}))
    with pytest.raises(trainport.ServerError) as raised:
        make_client(script, sleeps, max_retry_after=60.0).runs.get("run_1")
    assert raised.value.status_code == 503
    assert sleeps == []


def test_a_create_sends_one_idempotency_key_on_every_retry() -> None:
    sleeps: list[float] = []
    script = Script(
        problem(500, "internal_error"),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("no answer"),
        problem(503, "unavailable"),
        httpx.Response(201, json=RUN),
    )
    run = make_client(script, sleeps, max_retries=4).runs.create(image="x", command=["y"])
    assert run.id == "run_1"
    keys = {r.headers["Idempotency-Key"] for r in script.requests}
    assert len(script.requests) == 5
    assert len(keys) == 1
    assert uuid.UUID(keys.pop()).version == 4
    assert json.loads(script.requests[0].content) == {"image": "x", "command": ["y"]}


def test_two_creates_send_two_different_idempotency_keys() -> None:
    script = Script(httpx.Response(201, json=RUN), httpx.Response(201, json=RUN))
    client = make_client(script, [])
    client.runs.create(image="x", command=["y"])
    client.runs.create(image="x", command=["y"])
    assert len({r.headers["Idempotency-Key"] for r in script.requests}) == 2


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "bad_request", trainport.BadRequest),
        (401, "unauthenticated", trainport.AuthenticationError),
        (403, "forbidden", trainport.PermissionDenied),
        (404, "not_found", trainport.NotFound),
        (409, "run_finished", trainport.Conflict),
        (412, "precondition_failed", trainport.PreconditionFailed),
        (422, "validation_error", trainport.ValidationError),
        (429, "quota_exceeded", trainport.QuotaExceeded),
    ],
)
def test_other_client_errors_are_raised_at_once_typed(
    status: int, code: str, error: type[trainport.APIStatusError]
) -> None:
    sleeps: list[float] = []
    script = Script(problem(status, code))
    with pytest.raises(error) as raised:
        make_client(script, sleeps).runs.get("run_1")
    assert (raised.value.status_code, raised.value.code) == (status, code)
    assert len(script.requests) == 1
    assert sleeps == []


def test_a_conflict_whose_code_says_nothing_changed_is_retried() -> None:
    script = Script(problem(409, "concurrent_change"), httpx.Response(200, json=RUN))
    make_client(script, []).runs.cancel("run_1")
    assert len(script.requests) == 2


def test_when_retries_run_out_the_last_error_is_raised() -> None:
    sleeps: list[float] = []
    script = Script(*[problem(503, "unavailable") for _ in range(3)])
    with pytest.raises(trainport.ServerError):
        make_client(script, sleeps, max_retries=2).runs.get("run_1")
    assert len(script.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_connection_failures_become_api_connection_errors_after_the_retries() -> None:
    script = Script(*[httpx.ConnectError("refused") for _ in range(3)])
    with pytest.raises(trainport.APIConnectionError, match="Cannot reach"):
        make_client(script, [], max_retries=2).runs.list()
    assert len(script.requests) == 3
    timeouts = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(trainport.APITimeoutError):
        make_client(timeouts, [], max_retries=0).runs.list()


def test_max_retries_zero_sends_once() -> None:
    script = Script(problem(503, "unavailable"))
    client = trainport.Client(
        base_url=BASE,
        api_key="tp_test",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(script)),
    )
    assert client.retry_policy.max_retries == 0
    with pytest.raises(trainport.ServerError):
        client.runs.get("run_1")
    assert len(script.requests) == 1


def test_a_key_mint_is_retried_only_when_the_server_surely_did_not_act() -> None:
    minted = {**RUN, "id": "key_1", "role": "member", "prefix": "tp_abc", "key": "tp_secret"}
    refused = Script(httpx.ConnectError("refused"), problem(429, "rate_limited"),
                     httpx.Response(201, json=minted))  # fmt: skip
    assert make_client(refused, []).api_keys.create("ci").key == "tp_secret"
    assert len(refused.requests) == 3
    ambiguous = Script(problem(502, "bad_gateway"))
    with pytest.raises(trainport.ServerError):
        make_client(ambiguous, []).api_keys.create("ci")
    assert len(ambiguous.requests) == 1


def test_the_async_client_retries_with_the_same_idempotency_key() -> None:
    sleeps: list[float] = []
    script = Script(problem(503, "unavailable", {"Retry-After": "2"}), httpx.ConnectError("x"),
                    httpx.Response(201, json=RUN))  # fmt: skip

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def create() -> trainport.Run:
        async with trainport.AsyncClient(
            base_url=BASE,
            api_key="tp_test",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(script)),
            retry_policy=RetryPolicy(jitter=lambda: 1.0),
            sleep=record,
        ) as client:
            return await client.runs.create(image="x", command=["y"])

    assert asyncio.run(create()).id == "run_1"
    assert sleeps == [2.0, 1.0]
    assert len({r.headers["Idempotency-Key"] for r in script.requests}) == 1


class BreakingStream(httpx.SyncByteStream):
    """A log body that delivers `lines`, then drops the connection."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self.lines:
            yield line.encode() + b"\n"
        raise httpx.ReadError("connection reset by peer")


def ndjson(time: str, text: str) -> str:
    return json.dumps({"time": time, "stream": "stdout", "text": text})


def test_a_followed_log_resumes_after_a_drop_without_repeating_or_losing_lines() -> None:
    log = [
        ndjson("2025-01-01T00:00:01.000000Z", "a"),
        ndjson("2025-01-01T00:00:02.000000Z", "b"),
        ndjson("2025-01-01T00:00:02.000000Z", "c"),  # same stamp as b: counted, not compared
        ndjson("2025-01-01T00:00:02.000000Z", "d"),
        ndjson("2025-01-01T00:00:03.000000Z", "e"),
    ]
    headers = {"content-type": "application/x-ndjson", "x-trainport-attempt": "2"}
    script = Script(
        httpx.Response(200, headers=headers, stream=BreakingStream(log[:3])),
        httpx.Response(200, headers=headers, content="\n".join(log) + "\n"),
    )
    sleeps: list[float] = []
    lines = list(make_client(script, sleeps).runs.logs("run_1", follow=True, tail=3))
    assert [line.text for line in lines] == ["a", "b", "c", "d", "e"]
    assert {(line.attempt, line.rank) for line in lines} == {(2, 0)}
    first, resumed = script.requests[0].url.params, script.requests[1].url.params
    assert (first["tail"], first["follow"], "attempt" not in first) == ("3", "true", True)
    assert ("tail" not in resumed, resumed["attempt"]) == (True, "2")  # same attempt, from start
    assert sleeps == [0.5]
