"""The daily usage rollup, kept in the transaction that ends each attempt.

`close_attempt` (core/runs/attempts.py) calls `add_ended` with the attempt it just closed, so
the rollup commits or rolls back with the ending itself and never counts an attempt twice (a
second close updates no row and adds nothing). The upsert is `INSERT ... ON CONFLICT DO
UPDATE SET gpu_seconds = gpu_seconds + excluded.gpu_seconds`, which PostgreSQL and SQLite both
run atomically, so concurrent endings on one (org, day, project, type) both count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.models import UsageDaily
from core.usage.metering import by_day

RollupKey = tuple[str, date, str, str]  # org, day, project, gpu type ("" when none)


@dataclass(frozen=True)
class Metered:
    """An attempt's metering facts."""

    org_id: str
    project_id: str
    gpu_type: str | None
    gpus: int
    started_at: datetime | None
    ended_at: datetime | None


def daily_seconds(attempts: Iterable[Metered]) -> dict[RollupKey, float]:
    """GPU-seconds per rollup key of ended attempts (open or unstarted ones add nothing)."""
    totals: dict[RollupKey, float] = {}
    for a in attempts:
        if not a.gpus or a.started_at is None or a.ended_at is None:
            continue
        for day, seconds in by_day(a.started_at, a.ended_at):
            key = (a.org_id, day, a.project_id, a.gpu_type or "")
            totals[key] = totals.get(key, 0.0) + a.gpus * seconds
    return totals


def add_ended(session: Session, attempts: Iterable[Metered]) -> None:
    """Add ended attempts to the rollup, in the caller's transaction."""
    totals = daily_seconds(attempts)
    if not totals:
        return
    rows = [
        {"org_id": k[0], "day": k[1], "project_id": k[2], "gpu_type": k[3], "gpu_seconds": v}
        for k, v in sorted(totals.items())  # one order everywhere: no deadlock between two
    ]
    dialect = session.get_bind().dialect.name
    insert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(UsageDaily)
    statement = insert.on_conflict_do_update(
        index_elements=["org_id", "day", "project_id", "gpu_type"],
        set_={"gpu_seconds": UsageDaily.gpu_seconds + insert.excluded.gpu_seconds},
    )
    session.execute(statement, rows)
