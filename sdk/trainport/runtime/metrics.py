"""The metric buffer between `run.log()` and the background reporter.

`log()` must never wait on the network, so points land in this buffer and a background thread
takes them out in batches. While the API is unreachable the buffer stays bounded: past
`capacity` points (checked by the reporter thread; by `log()` itself past twice that), the
older points are decimated to an even stride over the whole run (every 2nd point, then every
4th, ... by arrival order) while the newest quarter stays at full resolution. A dropped
point's metric names that its kept successor lacks are carried into it, so a long outage costs
resolution in the past, never the latest points and never a metric name (an `eval_loss`
logged every 500 steps survives beside a per-step `loss`).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_CAPACITY = 20_000
MAX_BATCH = 10_000  # the API accepts at most this many points per request
MAX_VALUES = 64  # names per point
METRIC_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,64}$")


class MetricNameError(ValueError):
    """A metric name or point the API would refuse; raised at `log()`, where the bug is."""


@dataclass(slots=True)
class MetricPoint:
    step: int
    values: dict[str, float]
    time: float  # seconds since the epoch
    seq: int = 0  # arrival order in the buffer, which decimates by it

    def to_json(self) -> dict[str, object]:
        return {"step": self.step, "values": dict(self.values), "time": self.time}


def make_point(step: int, values: Mapping[str, object], now: float | None = None) -> MetricPoint:
    """A point of finite floats. NaN and infinities are left out (JSON has no NaN and the API
    drops them); a bad name raises MetricNameError."""
    if step < 0:
        raise MetricNameError(f"step must be >= 0, not {step}")
    if len(values) > MAX_VALUES:
        raise MetricNameError(f"at most {MAX_VALUES} values per log() call, not {len(values)}")
    clean: dict[str, float] = {}
    for name, value in values.items():
        if not METRIC_NAME.match(name):
            raise MetricNameError(f"metric name {name!r} must match {METRIC_NAME.pattern}")
        number = float(value)  # type: ignore[arg-type]  # numbers, numpy and torch scalars
        if math.isfinite(number):
            clean[name] = number
    return MetricPoint(step, clean, time.time() if now is None else now)


class MetricBuffer:
    """A thread-safe FIFO of points, bounded by thinning its older points."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 4:
            raise ValueError("capacity must be at least 4")
        self.capacity = capacity
        self.thinned = 0  # points decimated away so far, for diagnostics
        self.stride = 1  # older points are kept when seq % stride == 0
        self._seq = 0
        self._points: deque[MetricPoint] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._points)

    def append(self, point: MetricPoint) -> bool:
        """Add a point; True when the buffer is over capacity and wants `compact()`.

        The thinning is left to the reporter thread so `log()` stays O(1); only if that thread
        is stuck (twice the capacity held) does `append` thin inline, to stay bounded.
        """
        with self._lock:
            point.seq, self._seq = self._seq, self._seq + 1
            self._points.append(point)
            size = len(self._points)
            if size > 2 * self.capacity:
                self._thin()
            return size > self.capacity

    def compact(self) -> None:
        """Thin the buffer back under its capacity if it is over."""
        with self._lock:
            if len(self._points) > self.capacity:
                self._thin()

    def take(self, limit: int = MAX_BATCH) -> list[MetricPoint]:
        """Remove and return up to `limit` of the oldest points."""
        with self._lock:
            count = min(limit, len(self._points))
            return [self._points.popleft() for _ in range(count)]

    def put_back(self, points: Iterable[MetricPoint]) -> None:
        """Return points that could not be sent to the front, oldest first, still bounded."""
        with self._lock:
            self._points.extendleft(reversed(list(points)))
            while len(self._points) > self.capacity:
                self._thin()

    def snapshot(self) -> list[MetricPoint]:
        with self._lock:
            return list(self._points)

    def _thin(self) -> None:
        # Called with the lock held. Decimate the older points at the current stride, doubling
        # it until the buffer is back to 3/4 full; O(n) per >= capacity/4 appends.
        target = self.capacity * 3 // 4
        self._decimate()
        while len(self._points) > target:
            self.stride *= 2
            self._decimate()

    def _decimate(self) -> None:
        older = len(self._points) - self.capacity // 4
        old = [self._points.popleft() for _ in range(older)]
        kept: list[MetricPoint] = []
        carried: dict[str, float] = {}
        for point in old:
            if point.seq % self.stride:
                carried.update(point.values)
                continue
            point.values = {**carried, **point.values}
            carried = {}
            kept.append(point)
        if carried and self._points:  # into the oldest full-resolution point
            self._points[0].values = {**carried, **self._points[0].values}
        self._points.extendleft(reversed(kept))
        self.thinned += len(old) - len(kept)
