"""`metrics.from_logs`: what a pattern makes of stored log lines, and what it may not do."""

from __future__ import annotations

import time

import pytest

from core.logs import timestamp
from core.metrics.from_logs import compile_pattern, parse_stored
from core.runs.spec import RunSpec

LOSS = r"iter (?P<step>\d+): loss (?P<loss>[\d.]+)"


def stored(*texts: str, stream: str = "stdout") -> bytes:
    return "".join(f"{timestamp()} {stream} {text}\n" for text in texts).encode()


def test_named_groups_become_values_at_the_step_group() -> None:
    points, consumed = parse_stored([compile_pattern(LOSS)], stored("iter 12: loss 2.6987, 3ms"))
    assert consumed > 0
    [point] = points
    assert (point.step, point.values) == (12, {"loss": 2.6987})
    assert point.time == pytest.approx(time.time(), abs=5)


def test_lines_that_do_not_match_and_platform_lines_are_skipped() -> None:
    data = stored("step 1 of 9", "iter x: loss 1") + stored("iter 3: loss 1.0", stream="system")
    assert parse_stored([compile_pattern(LOSS)], data)[0] == []


def test_a_partial_last_line_is_left_for_the_next_read() -> None:
    whole = stored("iter 1: loss 1.5")
    points, consumed = parse_stored([compile_pattern(LOSS)], whole + b"2026-01-01T00 stdout it")
    assert len(points) == 1
    assert consumed == len(whole)


def test_several_patterns_each_add_their_series() -> None:
    patterns = [compile_pattern(LOSS), compile_pattern(r"step (?P<step>\d+) lr (?P<lr>\S+)")]
    points, _ = parse_stored(patterns, stored("iter 5: loss 2.0", "step 5 lr 3e-4"))
    assert [p.values for p in points] == [{"loss": 2.0}, {"lr": 3e-4}]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"loss (?P<loss>\d+)", "needs a (?P<step>...) group"),
        (r"iter (?P<step>\d+)", "names no metric"),
        (r"(?P<step>\d+) (a)\1", "not an RE2 expression"),
        (r"(?P<step>\d+) (?=x)(?P<loss>\d)", "not an RE2 expression"),
        (r"(?P<step>\d+)((a{100}){100}){100}(?P<loss>\d)", "not an RE2 expression"),
    ],
)
def test_a_bad_pattern_is_refused_at_submission(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match="from_logs") as refused:
        RunSpec(command=["x"], metrics={"from_logs": [{"pattern": pattern}]})
    assert message in str(refused.value)


def test_a_pathological_pattern_cannot_stall_the_parser() -> None:
    """`(a+)+$` backtracks exponentially in Python's `re`: on a 30-character line it takes
    minutes. RE2 is linear in the line whatever the pattern: 2,000 64 KiB lines of `a`s, the
    longest a stored line can be, parse in well under a second."""
    evil = compile_pattern(r"(?P<step>\d*)(?P<x>(a+)+)$b")
    line = "a" * (64 * 1024 - 64)
    started = time.perf_counter()
    points, _ = parse_stored([evil], stored(*[line] * 2000))
    assert points == []
    assert time.perf_counter() - started < 5.0


def test_a_pattern_too_large_for_the_memory_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="not an RE2 expression"):
        compile_pattern(r"(?P<step>\d+)(?P<loss>" + r"\pL{1000}" * 5 + ")")  # 68 characters
