"""Metric and progress rules: record points and heartbeats, read downsampled series.

Points are appended as they come (a repeated batch adds samples; the runtime does not resend
what was acknowledged). Each write also keeps the run's progress row current: the value at the
highest step per metric, the step and rate for `estimated_finish`, and per attempt the highest
step seen, from which a resumed attempt's `steps_lost` is computed.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.metrics import repository
from core.metrics.downsample import downsample
from core.metrics.repository import PointRow
from core.metrics.schemas import Heartbeat, MetricBatch, Series, SeriesSet
from core.models import Run, RunProgress, utcnow
from core.runs.service import get_run
from core.runs.versions import claim_resource_version
from core.tenants.schemas import Principal, Role

# A heartbeat bumps the run's resource_version (waking watchers) at most this often.
VERSION_BUMP_INTERVAL = timedelta(seconds=2)


def record_points(
    session: Session,
    caller: Principal,
    run_id: str,
    batch: MetricBatch,
    now: datetime | None = None,
) -> int:
    """Append the batch's finite values; answer how many points were accepted."""
    caller.require(Role.MEMBER)
    run = get_run(session, caller, run_id)
    received = (now or utcnow()).timestamp()
    rows = [
        PointRow(name, point.step, value, point.time if point.time is not None else received)
        for point in batch.points
        for name, value in point.values.items()
        if value is not None and math.isfinite(value)
    ]
    store_points(session, run.id, caller.attempt or run.attempt, rows)
    return len(batch.points)


def store_points(session: Session, run_id: str, attempt: int, rows: list[PointRow]) -> None:
    """Append points of one attempt and keep the run's progress row current; the one way
    points are written, whether the run sent them or the platform parsed them."""
    repository.insert_points(session, run_id, rows)
    if rows:
        state = repository.lock_progress(session, run_id)
        state.latest = _merge_latest(state.latest or {}, rows)
        repository.raise_last_step(session, run_id, attempt, max(row.step for row in rows))
        session.flush()


def _merge_latest(latest: dict[str, list[float]], rows: list[PointRow]) -> dict[str, list[float]]:
    merged = dict(latest)
    for row in rows:  # later rows win at equal steps: they arrived later
        if row.name not in merged or row.step >= merged[row.name][0]:
            merged[row.name] = [row.step, row.value]
    return merged


def read_series(
    session: Session, caller: Principal, run_id: str, names: list[str], max_points: int
) -> SeriesSet:
    """The run's metric series (all, or `names`), each thinned to at most `max_points`."""
    run = get_run(session, caller, run_id)
    wanted = sorted(set(names)) if names else repository.metric_names(session, run.id)
    series = {}
    for name in wanted:
        found = _series(session, run.id, name, max_points)
        if found is not None:
            series[name] = found
    return SeriesSet(series=series)


def _series(session: Session, run_id: str, name: str, max_points: int) -> Series | None:
    """The whole series when it is short; else first, last and min/max per step bucket."""
    count, low, high = repository.series_stats(session, run_id, name)
    if count == 0:
        return None
    if count <= max_points:
        steps, values = repository.series(session, run_id, name)
        return Series(steps=steps, values=values)
    buckets = (max_points - 2) // 2  # 0 for a budget of 2 or 3: the endpoints alone
    extremes = (
        repository.bucket_extremes(session, run_id, name, buckets, low, high) if buckets else []
    )
    points = distinct_in_order(
        [
            repository.point_at(session, run_id, name, low, last=False),
            *extremes,
            repository.point_at(session, run_id, name, high, last=True),
        ]
    )
    steps, values = [p[0] for p in points], [p[1] for p in points]
    # Buckets by step can still exceed the budget when steps repeat: trim by index then.
    steps, values = downsample(steps, values, max_points)
    return Series(steps=steps, values=values)


def distinct_in_order(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """`points` without repeats: the first and last points are often their bucket's extreme
    too (`steps [1, 1, 380, 400]`)."""
    return list(dict.fromkeys(points))


def heartbeat(
    session: Session, caller: Principal, run_id: str, beat: Heartbeat, now: datetime | None = None
) -> None:
    """Record progress; the first heartbeat of an attempt anchors its step rate."""
    caller.require(Role.MEMBER)
    now = now or utcnow()
    run = get_run(session, caller, run_id, for_update=True)  # lock order: run, progress, counter
    attempt = caller.attempt or run.attempt
    state = repository.lock_progress(session, run.id)
    previous_beat = state.last_heartbeat_at
    if state.attempt != attempt:
        state.attempt, state.rate_step, state.rate_at = attempt, None, None
    if beat.step is not None:
        _advance(session, state, run.id, attempt, beat.step, now)
    if beat.total_steps is not None:
        state.total_steps = beat.total_steps
    if beat.resumed_from_step is not None:
        _record_resume(session, run.id, attempt, beat.resumed_from_step)
    state.last_heartbeat_at = now
    session.flush()
    if previous_beat is None or now - previous_beat >= VERSION_BUMP_INTERVAL:
        _bump_version(session, run)


def _advance(
    session: Session, state: RunProgress, run_id: str, attempt: int, step: int, now: datetime
) -> None:
    state.step = step
    if state.rate_step is None or step < state.rate_step:
        state.rate_step, state.rate_at = step, now
    repository.raise_last_step(session, run_id, attempt, step)


def _record_resume(session: Session, run_id: str, attempt: int, resumed_from: int) -> None:
    before = repository.earlier_last_step(session, run_id, attempt)
    lost = max(before - resumed_from, 0) if before is not None else None
    repository.record_resume(session, run_id, attempt, resumed_from, lost)


def _bump_version(session: Session, run: Run) -> None:
    version = claim_resource_version(session, run.id)
    session.execute(
        update(Run)
        .where(Run.id == run.id)
        .values(resource_version=version)
        .execution_options(synchronize_session=False)
    )
