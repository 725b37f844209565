"""What every API answer must look like, and moving a run along its lifecycle for a test.

`assert_problem` is the error contract in one place: RFC 9457 content type, the five fields,
and no stack trace or SQL. `advance` drives a run through `transition()` the way workers do.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient

from api.app_state import app_sessionmaker
from core.db import session_scope
from core.models import Run
from core.runs.states import RunStatus, StatusReason, transition
from tests.factories import app_of

LEAK_MARKERS = ("Traceback", 'File "', "SELECT ", "INSERT ", "UPDATE ", "sqlalchemy", "psycopg")
REASONS = {
    RunStatus.QUEUED: StatusReason.QUEUED_FOR_CAPACITY,
    RunStatus.STARTING: StatusReason.LAUNCHING,
    RunStatus.RUNNING: StatusReason.RUNNING,
    RunStatus.SUCCEEDED: StatusReason.COMPLETED,
    RunStatus.FAILED: StatusReason.EXIT_CODE_NONZERO,
}


def assert_no_leak(response: httpx.Response) -> None:
    for marker in LEAK_MARKERS:
        assert marker not in response.text, f"{marker!r} leaked into a response: {response.text}"


def assert_problem(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """The response is a problem document with `status` (and `code`); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "code"} <= body.keys(), body
    assert body["status"] == status
    assert all(isinstance(body[f], str) and body[f] for f in ("type", "title", "detail", "code"))
    if code is not None:
        assert body["code"] == code, body
    assert_no_leak(response)
    return body


def pointers(body: dict[str, Any]) -> set[str]:
    """The JSON pointers (body fields) and parameter names a validation problem names."""
    return {e.get("pointer", e.get("parameter")) for e in body.get("errors", [])}


def advance(client: TestClient, run_id: str, *statuses: RunStatus) -> None:
    """Move a run through `statuses` in order, each step a real lifecycle transition."""
    app = app_of(client)
    for status in statuses:
        with session_scope(app_sessionmaker(app)) as session:
            run = session.get(Run, run_id)
            assert run is not None
            reason = REASONS.get(status, StatusReason.USER_CANCELLED)
            transition(session, run, status, reason, next_attempt=status is RunStatus.STARTING)


def finish(client: TestClient, run_id: str) -> None:
    """A pending run that ran and succeeded."""
    advance(
        client,
        run_id,
        RunStatus.QUEUED,
        RunStatus.STARTING,
        RunStatus.RUNNING,
        RunStatus.SUCCEEDED,
    )
