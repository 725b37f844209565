"""Every query over runs, their labels and events. All of them are scoped to one organisation."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Connection, Row, Select, String, and_, any_, bindparam, func, select
from sqlalchemy.orm import Session, joinedload, lazyload

from core.db import among
from core.ids import lowest_id_at
from core.models import ApiKey, Run, RunAttempt, RunEvent, RunLabel, RunProgress, VersionCounter
from core.runs.versions import RUNS_COUNTER
from core.tenants.repository import KEY_STATE_COLUMNS

# A Run for a worker's step, which changes it or reads its columns: its attempts and progress
# (loaded with it for the API's documents: two more statements each time) load only if the step
# reads them (issue 17).
BARE = (lazyload(Run.attempts), lazyload(Run.training))


@dataclass
class RunFilter:
    """What `GET /v1/runs` may filter on; every field narrows the result."""

    org_id: str
    project_id: str | None = None
    statuses: Sequence[str] = ()
    labels_equal: dict[str, str] = field(default_factory=dict)
    labels_present: Sequence[str] = ()
    name_prefix: str | None = None
    name: str | None = None  # exact: how the CLI and SDK find a run by its name
    created_after: datetime | None = None
    created_before: datetime | None = None

    @property
    def narrowed(self) -> bool:
        """Whether anything beyond the org and the project narrows the list."""
        scope = ("org_id", "project_id")
        return any(getattr(self, f.name) for f in fields(self) if f.name not in scope)


def get_run(session: Session, org_id: str, run_id: str, *, for_update: bool = False) -> Run | None:
    query = select(Run).where(Run.org_id == org_id, Run.id == run_id, Run.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    else:  # one round trip: attempts and progress joined in, not two more selectin queries
        query = query.options(joinedload(Run.attempts), joinedload(Run.training))
    return session.scalars(query).unique().first()


def run_version(session: Session, org_id: str, run_id: str) -> int | None:
    """Just the run's resource_version: what a conditional GET needs, read from one index row."""
    return session.scalar(
        select(Run.resource_version).where(
            Run.org_id == org_id, Run.id == run_id, Run.deleted_at.is_(None)
        )
    )


# The hot read (`core/runs/reads.py`): the presented key's row and the run in ONE statement.
# LEFT JOINs: a key with no such run in its org still comes back (auth first, then 404).
RUN_COLUMNS = (
    *("id", "name", "project_id", "status", "status_reason", "status_message", "priority"),
    *("attempt", "labels", "spec", "resource_version", "created_by", "created_at", "updated_at"),
    *("queued_at", "started_at", "finished_at", "cloned_from"),
)
PROGRESS_COLUMNS = (
    "run_id",
    "step",
    "total_steps",
    "latest",
    "last_heartbeat_at",
    "rate_step",
    "rate_at",
)
ATTEMPT_COLUMNS = (
    *("attempt", "cluster", "where", "gpus", "gpu_type", "admitted_at", "started_at"),
    *("ended_at", "outcome", "exit_code", "reason", "message", "resumed_from_step", "steps_lost"),
    "preempted_by",
)


def _with_key(*columns: Any) -> Select[Any]:
    """The key's state (`key_*`), then `columns`, for `:digest` and the run `:run_id` in its org."""
    keyed = [getattr(ApiKey, name).label(f"key_{name}") for name in KEY_STATE_COLUMNS]
    in_org = and_(
        Run.org_id == ApiKey.org_id, Run.id == bindparam("run_id"), Run.deleted_at.is_(None)
    )
    return (
        select(*keyed, *columns)
        .select_from(ApiKey)
        .outerjoin(Run, in_org)
        .where(ApiKey.digest == bindparam("digest"))
    )


# Built once: SQLAlchemy then reuses the compiled SQL (and psycopg its prepared statement);
# core/runs/reads.py also runs them on asyncpg (core/aio.py).
KEYED_VERSION = _with_key(Run.resource_version, Run.project_id)
KEYED_RUN = (
    _with_key(
        *(getattr(Run, name) for name in RUN_COLUMNS),
        *(getattr(RunProgress, n).label(f"progress_{n}") for n in PROGRESS_COLUMNS),
        *(getattr(RunAttempt, n).label(f"attempt_{n}") for n in ATTEMPT_COLUMNS),
    )
    .outerjoin(RunProgress, RunProgress.run_id == Run.id)
    .outerjoin(RunAttempt, RunAttempt.run_id == Run.id)
    .order_by(RunAttempt.attempt)
)


def keyed_run(conn: Connection, digest: str, run_id: str) -> Sequence[Row[Any]]:
    """The key, the run, its progress and one row per attempt (one row when it has none)."""
    return conn.execute(KEYED_RUN, {"digest": digest, "run_id": run_id}).all()


def _filtered(criteria: RunFilter) -> Select[Run]:
    query = select(Run).where(Run.org_id == criteria.org_id, Run.deleted_at.is_(None))
    if criteria.project_id:
        query = query.where(Run.project_id == criteria.project_id)
    if criteria.statuses:
        query = query.where(Run.status.in_(list(criteria.statuses)))
    for key, value in criteria.labels_equal.items():
        query = query.where(Run.id.in_(_label_runs(criteria.org_id, key, value)))
    for key in criteria.labels_present:
        query = query.where(Run.id.in_(_label_runs(criteria.org_id, key, None)))
    if criteria.name_prefix:
        escaped = criteria.name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Run.name.like(escaped + "%", escape="\\"))
    if criteria.name:
        query = query.where(Run.name == criteria.name)  # ix_runs_org_id_name
    if criteria.created_after:
        # ids are time-ordered, so the bound on id keeps this an index range scan.
        query = query.where(
            Run.id >= lowest_id_at("run", criteria.created_after),
            Run.created_at > criteria.created_after,
        )
    if criteria.created_before:
        query = query.where(Run.created_at < criteria.created_before)
    return query


def _label_runs(org_id: str, key: str, value: str | None) -> Select[str]:
    query = select(RunLabel.run_id).where(RunLabel.org_id == org_id, RunLabel.key == key)
    return query.where(RunLabel.value == value) if value is not None else query


def _page(in_project: bool, below: bool) -> Select[Run]:
    query = select(Run).where(Run.org_id == bindparam("org_id"), Run.deleted_at.is_(None))
    if in_project:
        query = query.where(Run.project_id == bindparam("project_id"))
    if below:
        query = query.where(Run.id < bindparam("before_id"))
    return query.order_by(Run.id.desc()).limit(bindparam("rows"))


# The unfiltered list (what a dashboard polls), built once with named parameters, so that its
# SQL is compiled once (core/runs/reads.py keeps the compiled column form of each).
PAGES = {
    (in_project, below): _page(in_project, below)
    for in_project in (False, True)
    for below in (False, True)
}


def page_query(
    criteria: RunFilter, limit: int, before_id: str | None
) -> tuple[Select[Run], dict[str, Any]]:
    """The run list's statement and its parameters (run as columns: core/runs/reads.py)."""
    params: dict[str, Any] = {"rows": limit + 1}
    if not criteria.narrowed:
        params |= {"org_id": criteria.org_id, "project_id": criteria.project_id}
        params |= {"before_id": before_id}
        return PAGES[bool(criteria.project_id), before_id is not None], params
    query = _filtered(criteria)
    if before_id is not None:
        query = query.where(Run.id < before_id)
    return query.order_by(Run.id.desc()).limit(bindparam("rows")), params


def current_version(session: Session) -> int:
    """The newest committed resource_version: every version at or below it is visible."""
    return int(session.scalar(CURRENT_VERSION) or 0)


CURRENT_VERSION = select(VersionCounter.value).where(VersionCounter.name == RUNS_COUNTER)


def _changes(in_project: bool) -> Select[Run]:
    query = select(Run).where(
        Run.org_id == bindparam("org_id"),
        Run.resource_version > bindparam("after"),
        Run.resource_version <= bindparam("upto"),
    )
    if in_project:
        query = query.where(Run.project_id == bindparam("project_id"))
    return query.order_by(Run.resource_version).limit(bindparam("rows"))


# Built once, with named parameters: the feed is polled, so its SQL is compiled only once
# (core/runs/reads.py keeps the compiled column form of each).
CHANGES = _changes(in_project=False)
CHANGES_IN_PROJECT = _changes(in_project=True)


def changes_query(
    org_id: str, project_id: str | None, after: int, upto: int, limit: int
) -> tuple[Select[Run], dict[str, Any]]:
    """The change feed's statement: runs (deleted ones included) whose version lies in
    (after, upto], oldest change first; and its parameters (run as columns: core/runs/reads.py)."""
    params = {"org_id": org_id, "after": after, "upto": upto, "rows": limit + 1}
    if project_id:
        return CHANGES_IN_PROJECT, {**params, "project_id": project_id}
    return CHANGES, params


ORG_VERSION = select(func.max(Run.resource_version).label("version")).where(
    Run.org_id == bindparam("org_id")
)
# A page's attempts and progress, for runs read as columns (core/runs/reads.py).
ATTEMPTS_OF = (
    select(RunAttempt.run_id, *(getattr(RunAttempt, name) for name in ATTEMPT_COLUMNS))
    .where(RunAttempt.run_id == any_(bindparam("run_ids", type_=ARRAY(String))))
    .order_by(RunAttempt.run_id, RunAttempt.attempt)
)
PROGRESS_OF = select(*(getattr(RunProgress, name) for name in PROGRESS_COLUMNS)).where(
    RunProgress.run_id == any_(bindparam("run_ids", type_=ARRAY(String)))
)
# The same on SQLite, which has no arrays: the ids as one JSON array, unpacked by json_each (an
# expanding IN of 200 placeholders cost more to render than the query).
_IDS_IN_JSON = select(func.json_each(bindparam("run_ids_json")).table_valued("value").c.value)
ATTEMPTS_OF_JSON = (
    select(RunAttempt.run_id, *(getattr(RunAttempt, name) for name in ATTEMPT_COLUMNS))
    .where(RunAttempt.run_id.in_(_IDS_IN_JSON))
    .order_by(RunAttempt.run_id, RunAttempt.attempt)
)
PROGRESS_OF_JSON = select(*(getattr(RunProgress, name) for name in PROGRESS_COLUMNS)).where(
    RunProgress.run_id.in_(_IDS_IN_JSON)
)


def attempts_and_progress(
    conn: Connection, run_ids: list[str]
) -> tuple[Sequence[Row[Any]], Sequence[Row[Any]]]:
    """The attempts (in order) and progress rows of these runs: a page read as columns."""
    if conn.dialect.name == "postgresql":
        params: dict[str, Any] = {"run_ids": run_ids}
        attempts, progress = ATTEMPTS_OF, PROGRESS_OF
    else:
        params = {"run_ids_json": json.dumps(run_ids)}
        attempts, progress = ATTEMPTS_OF_JSON, PROGRESS_OF_JSON
    return conn.execute(attempts, params).all(), conn.execute(progress, params).all()


def metrics_parts(session: Session, run_ids: Collection[str]) -> dict[str, dict[str, Any] | None]:
    """Each run's spec `metrics` part (log patterns, a TensorBoard folder): what a reconcile
    pass reads for the attempts it observed, in its own read of the active runs."""
    if not run_ids:
        return {}
    query = select(Run.id, Run.spec["metrics"]).where(among(session, Run.id, run_ids))
    return {run_id: part for run_id, part in session.execute(query)}


def replace_labels(session: Session, run: Run, labels: dict[str, str]) -> None:
    session.query(RunLabel).filter(RunLabel.run_id == run.id).delete(synchronize_session=False)
    add_labels(session, run, labels)


def add_labels(session: Session, run: Run, labels: dict[str, str]) -> None:
    """A new run's label rows (it has none yet, so nothing to delete first)."""
    session.add_all(
        RunLabel(run_id=run.id, org_id=run.org_id, key=k, value=v) for k, v in labels.items()
    )


def list_events(session: Session, run_id: str, after_id: int, limit: int) -> list[RunEvent]:
    query = select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.id > after_id)
    return list(session.scalars(query.order_by(RunEvent.id).limit(limit + 1)))
