"""The limits a running attempt is held to, judged from the run as it is now (issue 15).

- `scheduling.max_duration`: how long the attempt may run, counted from when it went running.
  The spec is read at every reconciler pass, so a `PATCH` applies to the attempt that runs now,
  lowered or raised; executors do not carry a copy of the limit from launch time.
- `scheduling.hang_timeout`: how long a running attempt may go without a heartbeat (its own:
  an earlier attempt's does not count; before the first one, from when it went running). A hung
  attempt is the platform's failure (`hung`), retried under the system policy.

A pure function of those facts and a clock, so the rule is tested without processes; the
reconciler (workers/reconciler.py) loads the facts, stops what breaks a limit on either
executor and settles the attempt with the ending given here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.runs.attempts import AttemptOutcome, Ending
from core.runs.states import StatusReason


@dataclass(frozen=True)
class RunningAttempt:
    """What the limits are judged on: the run's current spec and its attempt's clocks."""

    spec: dict[str, Any]
    running_since: datetime | None
    last_heartbeat_at: datetime | None = None  # this attempt's latest, if any


def limit_reached(attempt: RunningAttempt, now: datetime) -> Ending | None:
    """The ending of an attempt that broke a limit at `now`; None while it keeps to them."""
    if attempt.running_since is None:
        return None
    scheduling = attempt.spec.get("scheduling") or {}
    max_duration, hang_timeout = scheduling.get("max_duration"), scheduling.get("hang_timeout")
    ran = (now - attempt.running_since).total_seconds()
    if max_duration and ran > max_duration:
        message = f"ran for {_seconds(ran)}, past its max_duration ({_seconds(max_duration)})"
        return Ending(AttemptOutcome.FAILED, StatusReason.MAX_DURATION_EXCEEDED, message)
    beat = max(attempt.running_since, attempt.last_heartbeat_at or attempt.running_since)
    quiet = (now - beat).total_seconds()
    if hang_timeout and quiet > hang_timeout:
        message = (
            f"no heartbeat for {_seconds(quiet)} while running, past its "
            f"hang_timeout ({_seconds(hang_timeout)}): stopped as hung"
        )
        return Ending(AttemptOutcome.SYSTEM_FAILED, StatusReason.HUNG, message)
    return None


def _seconds(value: float) -> str:
    """`2s`, `1m30s`, `2h5m`: the units a spec's durations are written in."""
    total = int(value)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (seconds, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"
