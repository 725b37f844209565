"""Metrics without code: series the platform parses from a run's log lines.

`metrics.from_logs: [{pattern: 'iter (?P<step>\\d+): loss (?P<loss>[\\d.]+)'}]` — each named
group but `step` becomes a series, `step` is the x axis. Patterns run on RE2 (google-re2), an
automaton engine whose time is linear in the line's length whatever the pattern: no pattern can
backtrack for ever, so a hostile or careless one cannot stall the worker that parses. On top,
a pattern's compiled program is capped (`MAX_PROGRAM_BYTES`: a pattern too large is refused at
submission), lines are capped by the log store (64 KiB), and a pass reads a bounded number of
bytes (`workers/log_metrics.py`). Patterns never match across lines (`never_nl`); `$` is the
end of a line, and `^` (only at the very start of a pattern) the start of its text.

The low-level `_re2.RE2` object is used instead of `re2.compile(...)`: the package's Python
wrapper builds a Match object per call and is 6x slower (bench/log_metrics_bench.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

import re2
from re2 import _re2

STEP_GROUP = "step"
MAX_PATTERNS = 16
MAX_PATTERN_CHARS = 512
MAX_PROGRAM_BYTES = 1 << 20  # RE2's memory budget per pattern; larger programs do not compile
METRIC_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_STREAMS = (b"stdout", b"stderr")  # `system` lines are the platform's, never the run's metrics
STORED_PREFIX = r"^\S+ \S+ "  # a stored line's time and stream (core/logs.py)


@dataclass(frozen=True)
class LogPattern:
    """A compiled pattern: as written (for one line's text) and for scanning stored lines
    (`scan`: multi-line, a leading `^` meaning the start of the text after the line's time and
    stream), with the span index of `step` and of each metric group."""

    source: str
    line: Any  # _re2.RE2 (the extension ships no types)
    scan: Any
    anchored: bool
    step: int
    metrics: tuple[tuple[int, str], ...]


class LogPoint(NamedTuple):  # a tuple: one is made per matching line, and that is the hot path
    step: int
    values: dict[str, float]
    time: float | None


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_PROGRAM_BYTES
    options.never_nl = True
    options.log_errors = False
    return options


def _compiled(pattern: str) -> Any:
    regexp = _re2.RE2(pattern.encode(), _options())
    if not regexp.ok():
        why = regexp.error().decode(errors="replace")
        raise ValueError(
            f"pattern {pattern!r} is not an RE2 expression ({why}); RE2 has no backreferences "
            "or lookarounds (https://github.com/google/re2/wiki/Syntax)"
        )
    return regexp


def compile_pattern(pattern: str) -> LogPattern:
    """The pattern compiled for parsing; ValueError saying what to change otherwise."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"a log pattern is at most {MAX_PATTERN_CHARS} characters")
    line = _compiled(pattern)
    groups = {name.decode(): index for name, index in line.NamedCapturingGroups()}
    if STEP_GROUP not in groups:
        raise ValueError(f"pattern {pattern!r} needs a (?P<step>...) group: the x axis")
    metrics = tuple(sorted((i, n) for n, i in groups.items() if n != STEP_GROUP))
    if not metrics:
        raise ValueError(f"pattern {pattern!r} names no metric: add a group like (?P<loss>...)")
    for _, name in metrics:
        if not METRIC_NAME.fullmatch(name):
            raise ValueError(f"group {name!r}: metric names are 1-64 of A-Z a-z 0-9 _")
    anchored = pattern.startswith("^")
    body = pattern[1:] if anchored else pattern
    scan = _compiled(f"(?m){STORED_PREFIX if anchored else ''}(?:{body})")
    return LogPattern(pattern, line, scan, anchored, groups[STEP_GROUP], metrics)


def patterns_of(spec: dict[str, Any]) -> list[LogPattern]:
    """The spec's `metrics.from_logs` patterns, compiled (validated at submission already)."""
    entries = ((spec.get("metrics") or {}).get("from_logs")) or []
    return [compile_pattern(entry["pattern"]) for entry in entries]


def _found(pattern: LogPattern, text: bytes, spans: Any) -> tuple[int, dict[str, float]] | None:
    """The step and finite values the spans of one match name in `text`."""
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


def parse_text(pattern: LogPattern, text: bytes) -> tuple[int, dict[str, float]] | None:
    """The step and values a pattern finds in one line of the run's output, if any."""
    spans = pattern.line.Match(_UNANCHORED, text, 0, len(text))
    return None if spans[0][0] < 0 else _found(pattern, text, spans)


def parse_stored(patterns: list[LogPattern], data: bytes) -> tuple[list[LogPoint], int]:
    """Points from stored log lines (`<time> <stream> <text>\\n`, core/logs.py); and how many
    bytes were whole lines (a trailing partial line is left for the next read).

    Each pattern scans the whole block in RE2 (lines that do not match cost no Python), and
    only the lines it matched are looked at: their stream (the platform's own `system` lines
    never count) and, where the match began in the time or stream, the text alone again."""
    end = data.rfind(b"\n") + 1
    points: list[LogPoint] = []
    for pattern in patterns:
        points.extend(_scan(pattern, data, end))
    return points, end


def _scan(pattern: LogPattern, data: bytes, end: int) -> Iterator[LogPoint]:
    match, position = pattern.scan.Match, 0
    while position < end:
        spans = match(_UNANCHORED, data, position, end)
        start = spans[0][0]
        line_start = data.rfind(b"\n", 0, start) + 1 if start >= 0 else -1
        line_end = data.find(b"\n", start) if start >= 0 else -1
        if line_end < 0:
            return
        position = line_end + 1
        time_end = data.find(b" ", line_start, line_end)
        text_start = data.find(b" ", time_end + 1, line_end) + 1
        if time_end < 0 or text_start <= 0 or data[time_end + 1 : text_start - 1] not in _STREAMS:
            continue
        if start < text_start and not pattern.anchored:  # matched in the time or stream
            found = parse_text(pattern, data[text_start:line_end])
        else:
            found = _found(pattern, data, spans)
        if found is not None:
            yield LogPoint(found[0], found[1], _epoch(data[line_start:time_end]))


def _epoch(stamp: bytes) -> float | None:
    """Epoch seconds of a stored line's `2026-01-31T12:00:00.123456Z` (core/logs.timestamp):
    the whole second is looked up once, the microseconds added."""
    whole = _second(stamp[:19])
    if whole is None or len(stamp) != 27 or not stamp[20:26].isdigit():
        return None
    return whole + int(stamp[20:26]) / 1e6


@lru_cache(maxsize=1024)
def _second(prefix: bytes) -> float | None:
    try:
        return (
            datetime.strptime(prefix.decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
        )
    except ValueError:
        return None
