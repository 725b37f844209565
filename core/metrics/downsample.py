"""Downsampling a long series for display: first and last kept, min and max per bucket."""

from __future__ import annotations

from collections.abc import Sequence


def downsample(
    steps: Sequence[int], values: Sequence[float], max_points: int
) -> tuple[list[int], list[float]]:
    """At most `max_points` points (≥ 2), in step order, that keep the series' shape.

    The interior is cut into equal runs of points; each contributes its lowest and highest value
    (in step order), so spikes survive where plain striding would skip them.
    """
    count = len(steps)
    if count <= max_points:
        return list(steps), list(values)
    buckets = (max_points - 2) // 2  # 0 for a budget of 2 or 3: the endpoints alone
    chosen = [0]
    interior = count - 2
    for bucket in range(buckets):
        start = 1 + bucket * interior // buckets
        stop = 1 + (bucket + 1) * interior // buckets
        if start >= stop:
            continue
        window = range(start, stop)
        low = min(window, key=values.__getitem__)
        high = max(window, key=values.__getitem__)
        chosen.extend(sorted({low, high}))
    chosen.append(count - 1)
    return [steps[i] for i in chosen], [values[i] for i in chosen]
