"""The time-limit rule (core/runs/time_limits.py) on its own: which clock each limit reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.runs.attempts import AttemptOutcome
from core.runs.states import RunStatus, StatusReason
from core.runs.time_limits import AttemptClock, duration_text, over_limit

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_max_duration_counts_from_running_not_from_launch() -> None:
    clock = AttemptClock(RunStatus.RUNNING, 1, launched_at=ago(7200), running_since=ago(59))
    assert over_limit({"max_duration": 60}, clock, NOW, 1800) is None
    late = AttemptClock(RunStatus.RUNNING, 1, launched_at=ago(7200), running_since=ago(60))
    ending = over_limit({"max_duration": 60}, late, NOW, 1800)
    assert ending is not None
    assert (ending.outcome, ending.reason) == (
        AttemptOutcome.FAILED,
        StatusReason.MAX_DURATION_EXCEEDED,
    )


def test_a_starting_attempt_is_never_over_max_duration() -> None:
    clock = AttemptClock(RunStatus.STARTING, 1, launched_at=ago(600), running_since=None)
    assert over_limit({"max_duration": 60, "max_pending": 3600}, clock, NOW, 1800) is None


def test_max_pending_counts_from_launch_while_starting_and_is_the_platforms_failure() -> None:
    clock = AttemptClock(RunStatus.STARTING, 2, launched_at=ago(300), running_since=ago(9000))
    ending = over_limit({"max_pending": 300}, clock, NOW, 1800, "rank 1 cannot be scheduled")
    assert ending is not None
    assert (ending.outcome, ending.reason) == (
        AttemptOutcome.SYSTEM_FAILED,
        StatusReason.PENDING_TIMEOUT,
    )
    assert ending.message == (
        "attempt 2 did not start within scheduling.max_pending (5m): the cluster had not "
        "started every rank; last seen: rank 1 cannot be scheduled"
    )


def test_the_operators_default_applies_without_max_pending_and_zero_turns_it_off() -> None:
    clock = AttemptClock(RunStatus.STARTING, 1, launched_at=ago(1800), running_since=None)
    ending = over_limit({}, clock, NOW, 1800)
    assert ending is not None
    assert "TRAINPORT_MAX_PENDING_SECONDS (30m)" in ending.message
    assert over_limit({}, clock, NOW, 0) is None
    assert over_limit({"max_pending": 3600}, clock, NOW, 1800) is None  # the run's own wins


def test_an_attempt_not_launched_yet_has_no_pending_clock() -> None:
    clock = AttemptClock(RunStatus.STARTING, 1, launched_at=None, running_since=None)
    assert over_limit({"max_pending": 1}, clock, NOW, 1) is None


def test_durations_read_as_people_write_them() -> None:
    assert [duration_text(s) for s in (0, 59, 61, 3600, 90061)] == [
        "0s", "59s", "1m1s", "1h", "1d1h1m1s",
    ]  # fmt: skip
