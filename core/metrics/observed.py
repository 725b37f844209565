"""Metrics the platform observes itself: series parsed from a rank's log as it grows.

`tail_log` parses what a rank's log gained since the last call and records the points through
the same path as the runtime's (`service.store_points`). Where it stopped is a row per (run,
attempt, rank), locked while a call runs and moved in the same transaction as the points, so
two workers parsing the same log neither double a point nor lose one. The log is read through
`LogBytes`, so where logs are stored (files today) is the caller's business.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.metrics.from_logs import LogPattern, parse_stored
from core.metrics.repository import PointRow
from core.metrics.service import store_points
from core.models import LogMetricCursor

READ_BUDGET_BYTES = 8 << 20  # per call: a huge backlog is parsed over several calls


class LogBytes(Protocol):
    def __call__(self, offset: int, limit: int) -> bytes:
        """Up to `limit` bytes of the rank's stored log from `offset` (b"" when none)."""


def tail_log(
    session: Session,
    run_id: str,
    attempt: int,
    rank: int,
    patterns: list[LogPattern],
    read: LogBytes,
    now: float,
) -> tuple[int, bool]:
    """(points recorded, whether the log may hold more than this call read)."""
    cursor = _locked_cursor(session, run_id, attempt, rank)
    data = read(cursor.offset, READ_BUDGET_BYTES)
    points, consumed = parse_stored(patterns, data)
    rows = [
        PointRow(name, point.step, value, point.time if point.time is not None else now)
        for point in points
        for name, value in point.values.items()
    ]
    store_points(session, run_id, attempt, rows)
    cursor.offset += consumed
    session.flush()
    return len(rows), len(data) >= READ_BUDGET_BYTES


def _locked_cursor(session: Session, run_id: str, attempt: int, rank: int) -> LogMetricCursor:
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(LogMetricCursor)
    session.execute(
        statement.values(
            run_id=run_id, attempt=attempt, rank=rank, offset=0
        ).on_conflict_do_nothing()
    )
    query = select(LogMetricCursor).where(
        LogMetricCursor.run_id == run_id,
        LogMetricCursor.attempt == attempt,
        LogMetricCursor.rank == rank,
    )
    return session.scalars(query.with_for_update().execution_options(populate_existing=True)).one()
