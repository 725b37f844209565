"""How much GPU time an attempt used: allocated GPUs x wall time, split by UTC day.

An attempt is metered from `started_at` (its processes exist) to `ended_at`, or to now while it
runs; an attempt that never started used nothing. The same rule prices `attempts[]`, a run's
`usage`, the daily rollup (core/usage/rollup.py) and the live part of the usage API.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta


def gpu_seconds(
    gpus: int, started_at: datetime | None, ended_at: datetime | None, now: datetime
) -> float:
    if not gpus or started_at is None:
        return 0.0
    end = ended_at or now
    return gpus * max(0.0, (end - started_at).total_seconds())


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def by_day(start: datetime, end: datetime) -> Iterator[tuple[date, float]]:
    """(UTC day, seconds of [start, end) on that day), in order."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    while start < end:
        cut = min(end, day_start(start.date()) + timedelta(days=1))
        yield start.date(), (cut - start).total_seconds()
        start = cut
