"""Metrics without code: series the platform parses from a run's log lines.

`metrics.from_logs: [{pattern: 'iter (?P<step>\\d+): loss (?P<loss>[\\d.]+)'}]` — each named
group but `step` becomes a series, `step` is the x axis. Patterns run on RE2 (google-re2), an
automaton engine whose time is linear in the line's length whatever the pattern: no pattern can
backtrack for ever, so a hostile or careless one cannot stall the worker that parses. On top,
a pattern's compiled program is capped (`MAX_PROGRAM_BYTES`: a pattern too large is refused at
submission), lines are capped by the log store (64 KiB), and a pass reads a bounded number of
bytes (`workers/log_metrics.py`). Patterns never match across lines (`never_nl`).

The low-level `_re2.RE2` object is used instead of `re2.compile(...)`: the package's Python
wrapper builds a Match object per call and is 6x slower (bench/log_metrics_bench.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import re2
from re2 import _re2

STEP_GROUP = "step"
MAX_PATTERNS = 16
MAX_PATTERN_CHARS = 512
MAX_PROGRAM_BYTES = 1 << 20  # RE2's memory budget per pattern; larger programs do not compile
METRIC_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_STREAMS = (b"stdout", b"stderr")  # `system` lines are the platform's, never the run's metrics


@dataclass(frozen=True)
class LogPattern:
    """A compiled pattern: the span index of `step` and of each metric group."""

    source: str
    regexp: Any  # _re2.RE2 (the extension ships no types)
    step: int
    metrics: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class LogPoint:
    step: int
    values: dict[str, float]
    time: float | None


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_PROGRAM_BYTES
    options.never_nl = True
    options.log_errors = False
    return options


def compile_pattern(pattern: str) -> LogPattern:
    """The pattern compiled for parsing; ValueError saying what to change otherwise."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"a log pattern is at most {MAX_PATTERN_CHARS} characters")
    regexp = _re2.RE2(pattern.encode(), _options())
    if not regexp.ok():
        why = regexp.error().decode(errors="replace")
        raise ValueError(
            f"pattern {pattern!r} is not an RE2 expression ({why}); RE2 has no backreferences "
            "or lookarounds (https://github.com/google/re2/wiki/Syntax)"
        )
    groups = {name.decode(): index for name, index in regexp.NamedCapturingGroups()}
    if STEP_GROUP not in groups:
        raise ValueError(f"pattern {pattern!r} needs a (?P<step>...) group: the x axis")
    metrics = tuple(sorted((i, n) for n, i in groups.items() if n != STEP_GROUP))
    if not metrics:
        raise ValueError(f"pattern {pattern!r} names no metric: add a group like (?P<loss>...)")
    for _, name in metrics:
        if not METRIC_NAME.fullmatch(name):
            raise ValueError(f"group {name!r}: metric names are 1-64 of A-Z a-z 0-9 _")
    return LogPattern(pattern, regexp, groups[STEP_GROUP], metrics)


def patterns_of(spec: dict[str, Any]) -> list[LogPattern]:
    """The spec's `metrics.from_logs` patterns, compiled (validated at submission already)."""
    entries = ((spec.get("metrics") or {}).get("from_logs")) or []
    return [compile_pattern(entry["pattern"]) for entry in entries]


def parse_text(pattern: LogPattern, text: bytes) -> tuple[int, dict[str, float]] | None:
    """The step and values one pattern finds in one line of the run's output, if any."""
    spans = pattern.regexp.Match(_UNANCHORED, text, 0, len(text))
    if spans[0][0] < 0:
        return None
    start, end = spans[pattern.step]
    try:
        step = int(text[start:end])
    except ValueError:
        return None
    values = {}
    for index, name in pattern.metrics:
        start, end = spans[index]
        if start >= 0:
            try:
                value = float(text[start:end])
            except ValueError:
                continue
            if math.isfinite(value):
                values[name] = value
    return (step, values) if values and step >= 0 else None


def parse_stored(patterns: list[LogPattern], data: bytes) -> tuple[list[LogPoint], int]:
    """Points from stored log lines (`<time> <stream> <text>\\n`, core/logs.py); and how many
    bytes were whole lines (a trailing partial line is left for the next read)."""
    end = data.rfind(b"\n") + 1
    points = []
    for line in _lines(data, end):
        stamp, _, rest = line.partition(b" ")
        stream, _, text = rest.partition(b" ")
        if stream not in _STREAMS:
            continue
        for pattern in patterns:
            found = parse_text(pattern, text)
            if found is not None:
                points.append(LogPoint(found[0], found[1], _epoch(stamp)))
    return points, end


def _lines(data: bytes, end: int) -> Iterator[bytes]:
    start = 0
    while start < end:
        stop = data.index(b"\n", start)
        yield data[start:stop]
        start = stop + 1


def _epoch(stamp: bytes) -> float | None:
    try:
        return datetime.fromisoformat(stamp.decode()).timestamp()
    except ValueError:
        return None
