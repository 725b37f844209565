"""Metric and progress queries: bulk point inserts (COPY on PostgreSQL), series, progress rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Double, case, cast, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.models import MetricPoint, RunAttempt, RunProgress

COPY_POINTS = "COPY metric_points (run_id, name, step, value, time) FROM STDIN"


@dataclass(frozen=True)
class PointRow:
    name: str
    step: int
    value: float
    time: float


def insert_points(session: Session, run_id: str, rows: Sequence[PointRow]) -> None:
    """Append rows; PostgreSQL takes them through COPY (100k points in well under a second)."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(COPY_POINTS) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row((run_id, row.name, row.step, row.value, row.time))
        return
    session.execute(
        insert(MetricPoint),
        [{"run_id": run_id, **row.__dict__} for row in rows],
    )


def metric_names(session: Session, run_id: str) -> list[str]:
    query = select(MetricPoint.name).where(MetricPoint.run_id == run_id).distinct()
    return sorted(session.scalars(query).all())


def series(session: Session, run_id: str, name: str) -> tuple[list[int], list[float]]:
    """One series in step order (arrival order within a step)."""
    rows = session.execute(
        select(MetricPoint.step, MetricPoint.value)
        .where(MetricPoint.run_id == run_id, MetricPoint.name == name)
        .order_by(MetricPoint.step, MetricPoint.id)
    ).all()
    return [row[0] for row in rows], [row[1] for row in rows]


def series_stats(session: Session, run_id: str, name: str) -> tuple[int, int, int]:
    """(points, lowest step, highest step) of one series, from the index alone."""
    row = session.execute(
        select(func.count(), func.min(MetricPoint.step), func.max(MetricPoint.step)).where(
            MetricPoint.run_id == run_id, MetricPoint.name == name
        )
    ).one()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


def bucket_extremes(
    session: Session, run_id: str, name: str, buckets: int, low: int, high: int
) -> list[tuple[int, float]]:
    """The lowest and highest point of each of `buckets` equal step ranges, in step order.

    Done in the database, so a 100 000-point series sends back only about 2 x `buckets` rows.
    The bucket is computed in floating point: steps may be large enough to overflow a product.
    """
    span = high - low + 1
    bucket = cast(cast(MetricPoint.step - low, Double) * buckets / span, BigInteger)
    ranked = (
        select(
            MetricPoint.step,
            MetricPoint.value,
            func.row_number()
            .over(partition_by=bucket, order_by=(MetricPoint.value, MetricPoint.step))
            .label("low_rank"),
            func.row_number()
            .over(partition_by=bucket, order_by=(MetricPoint.value.desc(), MetricPoint.step))
            .label("high_rank"),
        )
        .where(MetricPoint.run_id == run_id, MetricPoint.name == name)
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.step, ranked.c.value)
        .where((ranked.c.low_rank == 1) | (ranked.c.high_rank == 1))
        .order_by(ranked.c.step)
    ).all()
    return [(int(row[0]), float(row[1])) for row in rows]


def point_at(session: Session, run_id: str, name: str, step: int, last: bool) -> tuple[int, float]:
    """The first (or last) point recorded at `step`."""
    order = MetricPoint.id.desc() if last else MetricPoint.id
    row = session.execute(
        select(MetricPoint.step, MetricPoint.value)
        .where(MetricPoint.run_id == run_id, MetricPoint.name == name, MetricPoint.step == step)
        .order_by(order)
        .limit(1)
    ).one()
    return int(row[0]), float(row[1])


def lock_progress(session: Session, run_id: str) -> RunProgress:
    """The run's progress row, created if missing, locked until commit."""
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(RunProgress)
    session.execute(
        statement.values(run_id=run_id, attempt=0, latest={}).on_conflict_do_nothing(
            index_elements=["run_id"]
        )
    )
    query = select(RunProgress).where(RunProgress.run_id == run_id).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).one()


def raise_last_step(session: Session, run_id: str, attempt: int, step: int) -> None:
    session.execute(
        update(RunAttempt)
        .where(RunAttempt.run_id == run_id, RunAttempt.attempt == attempt)
        .values(
            last_step=case(
                (RunAttempt.last_step.is_(None), step),
                (RunAttempt.last_step < step, step),
                else_=RunAttempt.last_step,
            )
        )
        .execution_options(synchronize_session=False)
    )


def earlier_last_step(session: Session, run_id: str, attempt: int) -> int | None:
    """The last step reported by the most recent earlier attempt that reported any."""
    return session.scalar(
        select(RunAttempt.last_step)
        .where(
            RunAttempt.run_id == run_id,
            RunAttempt.attempt < attempt,
            RunAttempt.last_step.is_not(None),
        )
        .order_by(RunAttempt.attempt.desc())
        .limit(1)
    )


def record_resume(
    session: Session, run_id: str, attempt: int, resumed_from: int, lost: int | None
) -> None:
    session.execute(
        update(RunAttempt)
        .where(RunAttempt.run_id == run_id, RunAttempt.attempt == attempt)
        .values(resumed_from_step=resumed_from, steps_lost=lost)
        .execution_options(synchronize_session=False)
    )


def step_at(session: Session, run_id: str, time: float) -> int | None:
    """The highest step any series of the run had reached by `time` (epoch seconds)."""
    query = select(func.max(MetricPoint.step)).where(
        MetricPoint.run_id == run_id, MetricPoint.time <= time
    )
    found = session.scalar(query)
    return int(found) if found is not None else None
