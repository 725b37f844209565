"""How long an attempt may wait to start and how long it may run: the one place both are judged.

The reconciler asks `over_limit` about every live attempt on each pass, on both executors, with
the run's current spec (so a changed limit applies to the attempt already running), and stops
the attempt that is over one:

- **Running time** (`scheduling.max_duration`) counts from the moment every rank was seen
  running (`runs.started_at`, written by the `running` transition). Time spent waiting for a
  node, an image pull or a volume is not the run's time: on Kubernetes the Job's own
  `activeDeadlineSeconds` counted it (an attempt that never got a node ended
  `max_duration_exceeded`), so the Job carries none. Over the limit, the attempt ends
  `max_duration_exceeded`: the run's own failure, retried only within `max_retries`.
- **Pending time** (`scheduling.max_pending`, else `TRAINPORT_MAX_PENDING_SECONDS`; 0 turns the
  default off) counts from the attempt's launch (`run_attempts.started_at`) while the run is
  still `starting`. Over it, the attempt ends `pending_timeout`: the cluster could not start
  it, which is not the code's fault, so it is a platform failure, retried by the system policy
  (`retry_on_system_failure`, at most TRAINPORT_SYSTEM_RETRY_LIMIT times; a retry is queued and
  admitted again, perhaps elsewhere) and otherwise fails the run with that reason.
- **Silence** (`scheduling.hang_timeout`): how long a running attempt may go without a heartbeat
  of its own (an earlier attempt's does not count; before the first one, from when it went
  running). A hung attempt ends `hung`, a platform failure retried under the system policy.
- **Queue time** (`scheduling.max_pending` only; the operator's default bounds the cluster
  wait alone) counts from the run's latest entry into the queue (`runs.queued_at`): a run the
  scheduler has not admitted within it fails `pending_timeout` (`over_queue_limit`).

A pure function of those facts and a clock, so the rules are tested without processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.runs.attempts import AttemptOutcome, Ending
from core.runs.states import RunStatus, StatusReason


@dataclass(frozen=True)
class AttemptClock:
    """What the database knows about the current attempt's times."""

    status: RunStatus
    attempt: int
    launched_at: datetime | None  # the launch completed (the executor's objects exist)
    running_since: datetime | None  # the run went `running` (every rank running)
    last_heartbeat_at: datetime | None = None  # this attempt's latest heartbeat, if any


def over_limit(
    scheduling: dict[str, Any],
    clock: AttemptClock,
    now: datetime,
    default_max_pending: float,
    waiting_for: str = "",
) -> Ending | None:
    """The ending of an attempt over one of its time limits, or None while it is within them.

    `waiting_for` is what the executor last said a pending attempt waits for (the scheduler's
    words), quoted in the pending_timeout message.
    """
    if clock.status is RunStatus.RUNNING and clock.running_since is not None:
        over = _over_max_duration(scheduling.get("max_duration"), clock, now)
        return over or _over_hang_timeout(scheduling.get("hang_timeout"), clock, now)
    if clock.status is RunStatus.STARTING and clock.launched_at is not None:
        return _over_max_pending(scheduling, clock, now, default_max_pending, waiting_for)
    return None


def _over_max_duration(limit: Any, clock: AttemptClock, now: datetime) -> Ending | None:
    assert clock.running_since is not None
    ran = (now - clock.running_since).total_seconds()
    if not limit or ran < float(limit):
        return None
    message = (
        f"attempt {clock.attempt} ran for {duration_text(ran)}, past its "
        f"scheduling.max_duration ({duration_text(float(limit))}), and was stopped"
    )
    return Ending(AttemptOutcome.FAILED, StatusReason.MAX_DURATION_EXCEEDED, message)


def _over_hang_timeout(limit: Any, clock: AttemptClock, now: datetime) -> Ending | None:
    assert clock.running_since is not None
    beat = max(clock.running_since, clock.last_heartbeat_at or clock.running_since)
    quiet = (now - beat).total_seconds()
    if not limit or quiet < float(limit):
        return None
    message = (
        f"attempt {clock.attempt} sent no heartbeat for {duration_text(quiet)} while running, "
        f"past its scheduling.hang_timeout ({duration_text(float(limit))}): stopped as hung"
    )
    return Ending(AttemptOutcome.SYSTEM_FAILED, StatusReason.HUNG, message)


def _over_max_pending(
    scheduling: dict[str, Any],
    clock: AttemptClock,
    now: datetime,
    default: float,
    waiting_for: str,
) -> Ending | None:
    assert clock.launched_at is not None
    limit, source = scheduling.get("max_pending"), "scheduling.max_pending"
    if not limit:
        limit, source = default, "TRAINPORT_MAX_PENDING_SECONDS"
    waited = (now - clock.launched_at).total_seconds()
    if not limit or waited < float(limit):
        return None
    message = (
        f"attempt {clock.attempt} did not start within {source} ({duration_text(float(limit))}): "
        "the cluster had not started every rank"
    )
    if waiting_for:
        message += f"; last seen: {waiting_for}"
    return Ending(AttemptOutcome.SYSTEM_FAILED, StatusReason.PENDING_TIMEOUT, message)


def duration_text(seconds: float) -> str:
    """`90` → `1m30s`, `7200` → `2h`: how people write durations."""
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if whole or not parts:
        parts.append(f"{whole}s")
    return "".join(parts)


def over_queue_limit(scheduling: dict[str, Any], queued_at: datetime, now: datetime) -> str | None:
    """Why a queued run has waited too long for admission, or None while within max_pending."""
    limit = scheduling.get("max_pending")
    waited = (now - queued_at).total_seconds()
    if not limit or waited < float(limit):
        return None
    return (
        f"not admitted within scheduling.max_pending ({duration_text(float(limit))}): "
        f"queued for {duration_text(waited)}"
    )
