"""`GET /v1/runs/{id}/logs`: a rank's log of one attempt, as text or NDJSON, optionally followed.

The run is looked up in the caller's org first (another org's run is a 404), then the run
logs in the database are read (core/log_archive.py): every API replica sees the same logs, and
they outlive the processes and pods that wrote them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, SessionDep, SessionmakerDep, SettingsDep
from api.routing import UnitOfWorkRoute
from core.db import session_scope
from core.errors import NotFound
from core.log_archive import LogArchive, log_attempts, log_ranks
from core.logs import LogKey, LogLine, attempt_is_over, log_may_appear
from core.models import Run
from core.runs import launcher, service
from core.runs.states import RunStatus
from core.settings import Settings
from core.tenants.schemas import Principal

router = APIRouter(prefix="/v1/runs", tags=["runs"], route_class=UnitOfWorkRoute)
NDJSON = "application/x-ndjson"
LOG_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "Lines `<RFC 3339 time> <stream> <text>`, or NDJSON objects",
        "content": {"text/plain": {}, NDJSON: {}},
    },
    404: {"description": "No such run, or no log for that attempt and rank"},
}


@router.get("/{run_id}/logs", response_class=StreamingResponse, responses=LOG_RESPONSES)
def get_run_logs(
    sessions: SessionmakerDep,
    run_id: Annotated[str, Path(min_length=1, max_length=64)],
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    attempt: Annotated[int | None, Query(ge=0, le=10_000, description="default: latest")] = None,
    rank: Annotated[int, Query(ge=0, le=4096)] = 0,
    tail: Annotated[int | None, Query(ge=0, le=100_000, description="last N lines")] = None,
    follow: Annotated[bool, Query(description="stream new lines until the attempt ends")] = False,
    accept: Annotated[str | None, Header(max_length=1024)] = None,
) -> StreamingResponse:
    """A rank's stdout/stderr with timestamps. `Accept: application/x-ndjson` for JSON lines."""
    run = service.get_run(session, caller, run_id)  # another org's run is simply missing
    attempts = log_attempts(session, run_id)
    chosen = attempt if attempt is not None else (attempts[-1] if attempts else run.attempt)
    stored = chosen in attempts and rank in log_ranks(session, run_id, chosen)
    if not stored and not (follow and _may_appear(run, chosen, rank)):
        if not attempts and run.attempt == 0:
            raise NotFound(f"Run {run_id} has no log yet: none of its attempts has started.")
        raise NotFound(f"Run {run_id} has no log for attempt {chosen} rank {rank}.")
    archive = _archive(sessions, settings)

    async def is_over() -> bool:
        return await run_in_threadpool(_attempt_over, sessions, caller, run_id, chosen)

    chunks = archive.read(LogKey(run_id, chosen, rank), tail, follow, is_over)
    as_json = NDJSON in (accept or "")
    return StreamingResponse(
        _as_ndjson(chunks) if as_json else chunks,
        media_type=NDJSON if as_json else "text/plain; charset=utf-8",
        headers={"X-Trainport-Attempt": str(chosen), "Cache-Control": "no-store"},
    )


def _may_appear(run: Run, attempt: int, rank: int) -> bool:
    started = run.status in (RunStatus.STARTING, RunStatus.RUNNING)
    ranks = launcher.nodes(run.spec) * launcher.processes_started(run.spec)
    return log_may_appear(started, run.attempt, attempt, rank, ranks)


def _archive(sessions: sessionmaker[Session], settings: Settings) -> LogArchive:
    """On PostgreSQL a NOTIFY wakes followers at once, and polling is only a fallback."""
    poll = 0.2 if settings.is_sqlite else 1.0
    return LogArchive(sessions, poll_interval=poll)


def _attempt_over(
    sessions: sessionmaker[Session], caller: Principal, run_id: str, attempt: int
) -> bool:
    """A short transaction of its own: the request's session is closed while the body streams."""
    try:
        with session_scope(sessions) as session:
            run = service.get_run(session, caller, run_id)
            return attempt_is_over(RunStatus(run.status).is_terminal, run.attempt, attempt)
    except NotFound:
        return True  # deleted while being followed


async def _as_ndjson(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        lines = chunk.decode(errors="replace").splitlines()
        yield "".join(json.dumps(LogLine.parse(line).__dict__) + "\n" for line in lines).encode()
