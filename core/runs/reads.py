"""The hottest request, `GET /v1/runs/{id}` with an API key, in one statement and no ORM.

One Core SELECT reads the presented key's row joined to the run, its progress and its attempts
(`repository.keyed_run`); a conditional GET first reads only the run's version the same way.
The key is judged from that row by the rule every request uses (`tenants.admit_key`), so a
revoked or expired key is refused at once, in every process. The connection comes from
`core.db.read_engine`: on PostgreSQL in autocommit, since one statement is its own snapshot and
BEGIN/COMMIT would be two more round trips. The `*_async` twins run the same statements and the
same rules on the event loop, through asyncpg (core/aio.py), without a worker thread.

A run that waits to start (pending, queued) is left to the ORM path (`service.describe_run`):
its `queue` needs the scheduler's plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from core.aio import AsyncReader
from core.errors import NotFound
from core.models import RunProgress
from core.runs import repository
from core.runs.schemas import RunOut
from core.runs.service import visible
from core.runs.states import RunStatus
from core.tenants import service as tenants
from core.tenants.repository import KEY_STATE_COLUMNS
from core.tenants.schemas import KeyState, Principal

WAITING = frozenset({RunStatus.PENDING.value, RunStatus.QUEUED.value})
Row = Mapping[Any, Any]  # a SQLAlchemy RowMapping or an asyncpg Record
_KEY_LABELS = tuple(f"key_{name}" for name in KEY_STATE_COLUMNS)


def _key(row: Row | None) -> KeyState | None:
    return KeyState(*(row[label] for label in _KEY_LABELS)) if row is not None else None


def _caller(conn: Connection, row: Row | None, touch_interval_s: int) -> Principal:
    return tenants.admit_key(conn, _key(row), touch_interval_s)


async def _caller_async(reader: AsyncReader, row: Row | None, touch_interval_s: int) -> Principal:
    caller, touch = tenants.judge_key(_key(row), touch_interval_s)
    if touch is not None:
        await reader.fetch(touch, {}, cache=False)
    return caller


def _visible(caller: Principal, run_id: str, row: Row | None) -> Row:
    """The row, when it holds a run the caller may see; otherwise 404, as on the ORM path."""
    project_id = row["project_id"] if row is not None else None
    if row is None or project_id is None or not visible(caller, run_id, project_id):
        raise NotFound(f"Run {run_id} was not found.")
    return row


def run_version(conn: Connection, secret: str | None, run_id: str, touch_interval_s: int) -> int:
    """The run's resource_version for the key `secret`: a conditional GET's one query."""
    digest = tenants.presented_digest(secret)
    row = repository.keyed_run_version(conn, digest, run_id)
    mapping = row._mapping if row is not None else None
    caller = _caller(conn, mapping, touch_interval_s)
    return int(_visible(caller, run_id, mapping)["resource_version"])


async def run_version_async(
    reader: AsyncReader, secret: str | None, run_id: str, touch_interval_s: int
) -> int:
    """`run_version` on the event loop (PostgreSQL, core/aio.py)."""
    params = {"digest": tenants.presented_digest(secret), "run_id": run_id}
    rows = await reader.fetch(repository.KEYED_VERSION, params)
    row = rows[0] if rows else None
    caller = await _caller_async(reader, row, touch_interval_s)
    return int(_visible(caller, run_id, row)["resource_version"])


def describe_run(
    conn: Connection, secret: str | None, run_id: str, touch_interval_s: int
) -> RunOut | None:
    """The run as GET shows it, for the key `secret`; None when it waits to start."""
    digest = tenants.presented_digest(secret)
    rows = [row._mapping for row in repository.keyed_run(conn, digest, run_id)]
    caller = _caller(conn, rows[0] if rows else None, touch_interval_s)
    return _shown(caller, run_id, rows)


async def describe_run_async(
    reader: AsyncReader, secret: str | None, run_id: str, touch_interval_s: int
) -> RunOut | None:
    """`describe_run` on the event loop (PostgreSQL, core/aio.py)."""
    params = {"digest": tenants.presented_digest(secret), "run_id": run_id}
    rows = await reader.fetch(repository.KEYED_RUN, params)
    caller = await _caller_async(reader, rows[0] if rows else None, touch_interval_s)
    return _shown(caller, run_id, rows)


def _shown(caller: Principal, run_id: str, rows: Sequence[Row]) -> RunOut | None:
    if _visible(caller, run_id, rows[0] if rows else None)["status"] in WAITING:
        return None
    return RunOut.model_validate(_document(rows))


def _document(rows: Sequence[Row]) -> dict[str, Any]:
    first = rows[0]
    document = {name: first[name] for name in repository.RUN_COLUMNS}
    document["attempts"] = [
        {name: row[f"attempt_{name}"] for name in repository.ATTEMPT_COLUMNS}
        for row in rows
        if row["attempt_attempt"] is not None
    ]
    if first["progress_run_id"] is not None:
        # The model's own properties compute progress and the estimate, as on the ORM path.
        progress = RunProgress(
            **{name: first[f"progress_{name}"] for name in repository.PROGRESS_COLUMNS}
        )
        document["progress"] = progress.progress
        document["latest_metrics"] = progress.latest_values
        document["estimated_finish"] = progress.estimated_finish
        document["last_heartbeat_at"] = progress.last_heartbeat_at
    return document
