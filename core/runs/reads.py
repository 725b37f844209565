"""The hottest reads without the ORM: `GET /v1/runs/{id}` with an API key in one statement, and
the run list and change feed (below).

One Core SELECT reads the presented key's row joined to the run, its progress and its attempts
(`repository.keyed_run`); on the event loop, a conditional GET first reads only the run's
version the same way (through a worker thread, on SQLite, the one statement serves both).
The key is judged from that row by the rule every request uses (`tenants.accept_key`), so a
revoked or expired key is refused at once, in every process. Each read is two steps: the
statement, which returns the caller it admitted with the rows (`keyed_*`), then the answer
(`version_of`, `shown`); between them the route counts the request against the key's org
(api/edge.py), with no second query (the org comes back in the key's row) and before a run it
may not see is answered 404. The connection comes from `core.db.read_engine`: on PostgreSQL in
autocommit, since one statement is its own snapshot and BEGIN/COMMIT would be two more round
trips; on SQLite a pool that never waits for the writer. The `*_async` twins run the same
statements and the same rules on the event loop, through asyncpg (core/aio.py), without a
worker thread.

A queued run is left to the ORM path (`core.scheduling.explain.describe_run`): its `queue`
needs the scheduler's plan. A pending one's is always the same (`schemas.SUBMITTED`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select

from core.errors import NotFound
from core.models import Run, RunProgress
from core.runs import repository, service
from core.runs.repository import RunFilter
from core.runs.schemas import SUBMITTED, RunOut, RunPage
from core.runs.service import visible
from core.runs.states import RunStatus
from core.tenants import service as tenants
from core.tenants.repository import KEY_STATE_COLUMNS, PROJECT_ID
from core.tenants.schemas import KeyState, Principal

if TYPE_CHECKING:  # asyncpg only where the API runs on PostgreSQL, not in every worker
    from core.aio import AsyncDatabase, Rows

Row = Mapping[Any, Any]  # a SQLAlchemy RowMapping or an asyncpg Record
_KEY_LABELS = tuple(f"key_{name}" for name in KEY_STATE_COLUMNS)


def _key(row: Row | None) -> KeyState | None:
    return KeyState(*(row[label] for label in _KEY_LABELS)) if row is not None else None


def _caller(conn: Connection, row: Row | None, touch_interval_s: int) -> Principal:
    return tenants.accept_key(conn, _key(row), touch_interval_s)


def _visible(caller: Principal, run_id: str, row: Row | None) -> Row:
    """The row, when it holds a run the caller may see; otherwise 404, as on the ORM path."""
    project_id = row["project_id"] if row is not None else None
    if row is None or project_id is None or not visible(caller, run_id, project_id):
        raise NotFound(f"Run {run_id} was not found.")
    return row


Keyed = tuple[Principal, Sequence[Row]]  # the admitted caller, and the statement's rows


async def keyed_version_async(
    reader: AsyncDatabase, secret: str | None, run_id: str, touch_interval_s: int
) -> Keyed:
    """The key's caller and the run's version row, on the event loop (PostgreSQL, core/aio.py):
    a conditional GET's one query there."""
    params = {"digest": tenants.presented_digest(secret), "run_id": run_id}
    rows = await reader.fetch(repository.KEYED_VERSION, params)
    key = _key(rows[0] if rows else None)
    return await tenants.accept_key_async(reader, key, touch_interval_s), rows


def version_of(keyed: Keyed, run_id: str) -> int:
    """The run's resource_version, when the caller may see it; otherwise 404."""
    caller, rows = keyed
    return int(_visible(caller, run_id, rows[0] if rows else None)["resource_version"])


def keyed_run(conn: Connection, secret: str | None, run_id: str, touch_interval_s: int) -> Keyed:
    """The key's caller and the run's rows (one per attempt): a GET's one query."""
    digest = tenants.presented_digest(secret)
    rows = [row._mapping for row in repository.keyed_run(conn, digest, run_id)]
    return _caller(conn, rows[0] if rows else None, touch_interval_s), rows


async def keyed_run_async(
    reader: AsyncDatabase, secret: str | None, run_id: str, touch_interval_s: int
) -> Keyed:
    """`keyed_run` on the event loop (PostgreSQL, core/aio.py)."""
    params = {"digest": tenants.presented_digest(secret), "run_id": run_id}
    rows = await reader.fetch(repository.KEYED_RUN, params)
    key = _key(rows[0] if rows else None)
    return await tenants.accept_key_async(reader, key, touch_interval_s), rows


def shown(keyed: Keyed, run_id: str) -> RunOut | None:
    """The run as GET shows it, when the caller may see it (else 404); None when queued."""
    caller, rows = keyed
    status = _visible(caller, run_id, rows[0] if rows else None)["status"]
    if status == RunStatus.QUEUED.value:
        return None  # its queue position needs the scheduler's plan (the ORM path)
    document = _document(rows)
    if status == RunStatus.PENDING.value:
        document["queue"] = SUBMITTED  # what `explain` says of every pending run
    return RunOut.model_validate(document)


def _document(rows: Sequence[Row]) -> dict[str, Any]:
    """One run's document from `keyed_run`'s rows (one per attempt, `attempt_`/`progress_`)."""
    first = rows[0]
    attempts = [row for row in rows if row["attempt_attempt"] is not None]
    progress = first if first["progress_run_id"] is not None else None
    return _assemble(first, attempts, progress, "attempt_", "progress_")


def _assemble(
    run: Row,
    attempts: Sequence[Row],
    progress: Row | None,
    attempt_prefix: str = "",
    progress_prefix: str = "",
) -> dict[str, Any]:
    document = {name: run[name] for name in repository.RUN_COLUMNS}
    document["attempts"] = [
        {name: row[attempt_prefix + name] for name in repository.ATTEMPT_COLUMNS}
        for row in attempts
    ]
    if progress is not None:
        # The model's own properties compute progress and the estimate, as on the ORM path.
        state = RunProgress(
            **{name: progress[progress_prefix + name] for name in repository.PROGRESS_COLUMNS}
        )
        document["progress"] = state.progress
        document["latest_metrics"] = state.latest_values
        document["estimated_finish"] = state.estimated_finish
        document["last_heartbeat_at"] = state.last_heartbeat_at
    return document


# The run list and the change feed, in both ways to the database: the statements of
# `repository.page_query` and `changes_query` selected as columns, then the page's attempts and
# progress in one statement each, assembled into documents without the ORM (its identity map
# and selectin loads were half of a 200-run page's time on SQLite; issue 17).


def org_version(conn: Connection, caller: Principal) -> int:
    """The newest version of any run in the caller's org: the list's ETag."""
    return int(conn.execute(repository.ORG_VERSION, {"org_id": caller.org_id}).scalar() or 0)


async def org_version_async(reader: AsyncDatabase, caller: Principal) -> int:
    rows = await reader.fetch(repository.ORG_VERSION, {"org_id": caller.org_id})
    return int(rows[0]["version"] or 0)


def list_page(
    conn: Connection, caller: Principal, criteria: RunFilter, limit: int, after: str | None
) -> RunPage:
    """A keyset page of the runs `criteria` selects, newest first, scoped to the caller."""
    criteria.project_id = _scoped_project(conn, caller, criteria.project_id)
    query, params = repository.page_query(criteria, limit, service.cursor_position(after))
    rows = [row._mapping for row in conn.execute(_columns(query), params)]
    return service.run_page(_runs_out(conn, rows), limit)


async def list_async(
    reader: AsyncDatabase, caller: Principal, criteria: RunFilter, limit: int, after: str | None
) -> RunPage:
    """`list_page` on the event loop."""
    criteria.project_id = await _scoped_project_async(reader, caller, criteria.project_id)
    query, params = repository.page_query(criteria, limit, service.cursor_position(after))
    # A filtered list's statement is built (and compiled) for this request: not cached.
    rows = await reader.fetch(_columns(query), params, cache=query in _AS_COLUMNS)
    return service.run_page(await _runs_out_async(reader, rows), limit)


def changes_page(
    conn: Connection, caller: Principal, after: int, limit: int, project: str | None = None
) -> RunPage:
    """Every run changed after version `after` (deletions too), oldest first, and the version
    to ask from next time."""
    project_id = _scoped_project(conn, caller, project)
    upto = int(conn.execute(repository.CURRENT_VERSION).scalar() or 0)
    query, params = repository.changes_query(caller.org_id, project_id, after, upto, limit)
    rows = [row._mapping for row in conn.execute(_AS_COLUMNS[query], params)]
    return service.feed_page(_runs_out(conn, rows), limit, after, upto)


async def changes_async(
    reader: AsyncDatabase, caller: Principal, after: int, limit: int, project: str | None = None
) -> RunPage:
    """`changes_page` on the event loop."""
    project_id = await _scoped_project_async(reader, caller, project)
    current = await reader.fetch(repository.CURRENT_VERSION, {})
    upto = int(current[0]["value"]) if current else 0
    query, params = repository.changes_query(caller.org_id, project_id, after, upto, limit)
    rows = await reader.fetch(_AS_COLUMNS[query], params)
    return service.feed_page(await _runs_out_async(reader, rows), limit, after, upto)


def _scoped_project(conn: Connection, caller: Principal, project: str | None) -> str | None:
    """The named project (judged by `tenants.judge_project`), else the key's own, if any."""
    if project is None:
        return caller.project_id
    wanted = tenants.wanted_project(caller, project)
    found = conn.execute(PROJECT_ID, {"org_id": caller.org_id, "wanted": wanted}).scalar()
    tenants.judge_project(caller, wanted, found)
    return found


async def _scoped_project_async(
    reader: AsyncDatabase, caller: Principal, project: str | None
) -> str | None:
    """`_scoped_project` on the event loop."""
    if project is None:
        return caller.project_id
    wanted = tenants.wanted_project(caller, project)
    rows = await reader.fetch(PROJECT_ID, {"org_id": caller.org_id, "wanted": wanted})
    found: str | None = rows[0]["id"] if rows else None
    tenants.judge_project(caller, wanted, found)
    return found


def _as_columns(query: Select[Any]) -> Select[Any]:
    columns = [getattr(Run, name) for name in (*repository.RUN_COLUMNS, "deleted_at")]
    return query.with_only_columns(*columns, maintain_column_froms=True)


# The statements built once, as columns, so that each is compiled once.
_AS_COLUMNS = {
    query: _as_columns(query)
    for query in (*repository.PAGES.values(), repository.CHANGES, repository.CHANGES_IN_PROJECT)
}


def _columns(query: Select[Any]) -> Select[Any]:
    """`query` as columns: built once for the unfiltered lists, per request for a filtered one."""
    built_once = _AS_COLUMNS.get(query)
    return built_once if built_once is not None else _as_columns(query)


def _runs_out(conn: Connection, rows: Sequence[Row]) -> list[RunOut]:
    ids = [row["id"] for row in rows]
    attempts, progress = repository.attempts_and_progress(conn, ids) if ids else ((), ())
    return _documents(rows, [a._mapping for a in attempts], [p._mapping for p in progress])


async def _runs_out_async(reader: AsyncDatabase, rows: Rows) -> list[RunOut]:
    ids = [row["id"] for row in rows]
    if not ids:
        return []
    params = {"run_ids": ids}
    attempts = await reader.fetch(repository.ATTEMPTS_OF, params)
    return _documents(rows, attempts, await reader.fetch(repository.PROGRESS_OF, params))


def _documents(
    rows: Sequence[Row], attempt_rows: Sequence[Row], progress_rows: Sequence[Row]
) -> list[RunOut]:
    """The runs' documents, from their rows and their attempts' (in order) and progress rows."""
    attempts: dict[str, list[Row]] = {row["id"]: [] for row in rows}
    for row in attempt_rows:
        attempts[row["run_id"]].append(row)
    progress = {row["run_id"]: row for row in progress_rows}
    outs = []
    for row in rows:
        document = _assemble(row, attempts[row["id"]], progress.get(row["id"]))
        document["deleted"] = row["deleted_at"] is not None
        outs.append(RunOut.model_validate(document))
    return outs
