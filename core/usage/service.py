"""Usage rules: metering an org's GPU time over a window, and the usage report admins read.

Ended attempts come from the daily rollup (core/usage/rollup.py), running ones are metered live
to now and split by day the same way, so a report always adds up to the runs' own `usage`.
Another org's report is exactly as missing as an org that does not exist (404); a
project-scoped key sees its own project only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.errors import FieldError, InvalidInput, NotFound
from core.models import utcnow
from core.tenants.schemas import Principal, Role
from core.usage import rates, repository
from core.usage.metering import by_day
from core.usage.rates import RateCard
from core.usage.schemas import GroupBy, UsageReport

MAX_WINDOW_DAYS = 3660
Tally = dict[tuple[str, str, str], float]  # (org, group value, GPU type) -> GPU-seconds


def tally(
    session: Session,
    org_ids: Sequence[str],
    group: GroupBy,
    since: date | None,
    until: date | None,
    now: datetime,
    project_id: str | None = None,
) -> Tally:
    """GPU-seconds on UTC days in [since, until) per org, group value and GPU type."""
    seconds: Tally = defaultdict(float)
    for org, value, gpu_type, summed in repository.rolled_up(
        session, org_ids, group.value, since, until, project_id
    ):
        seconds[(org, _text(value), gpu_type)] += float(summed or 0.0)
    for attempt in repository.running_attempts(session, org_ids, project_id):
        gpu_type = attempt.gpu_type or ""
        for day, span in by_day(attempt.started_at or now, now):
            if (since is not None and day < since) or (until is not None and day >= until):
                continue
            value = {
                GroupBy.PROJECT: attempt.project_id,
                GroupBy.GPU_TYPE: gpu_type,
                GroupBy.DAY: day.isoformat(),
            }[group]
            seconds[(attempt.org_id, value, gpu_type)] += attempt.gpus * span
    return seconds


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def usage_report(
    session: Session,
    caller: Principal,
    org_id: str,
    since: date | None,
    until: date | None,
    group_by: GroupBy,
    card: RateCard,
) -> UsageReport:
    """`GET /v1/orgs/{id}/usage`: GPU-hours and cost per project, GPU type or day."""
    if org_id != caller.org_id:
        raise NotFound(f"Organisation {org_id} was not found.")
    caller.require(Role.ADMIN)
    now = utcnow()
    since, until = _window(since, until, now)
    found = tally(session, [org_id], group_by, since, until, now, caller.project_id)
    names = repository.project_names(session, org_id) if group_by is GroupBy.PROJECT else {}
    # Plain sums, then one validation of the whole document: a year by day is 366 rows.
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (_, value, gpu_type), seconds in found.items():
        hours = seconds / 3600.0
        sums[value][0] += hours
        sums[value][1] += card.rate(gpu_type or None) * hours
    data = [_row(group_by, value, sums[value], names) for value in sorted(sums)]
    return UsageReport.model_validate(
        {
            "org_id": org_id,
            "project_id": caller.project_id,
            "from": since,
            "to": until,
            "group_by": group_by,
            "currency": card.currency,
            "total": {
                "gpu_hours": rates.tidy_hours(sum(h for h, _ in sums.values())),
                "cost": rates.money(sum(c for _, c in sums.values())),
            },
            "data": data,
        }
    )


def _window(since: date | None, until: date | None, now: datetime) -> tuple[date, date]:
    """Defaults: this calendar month so far (UTC), today included."""
    until = until or now.date() + timedelta(days=1)
    since = since or now.date().replace(day=1)
    if since >= until or (until - since).days > MAX_WINDOW_DAYS:
        raise InvalidInput(
            "`from` must be before `to`, at most 10 years apart.",
            [FieldError.for_parameter("from", "must be a day before `to`")],
        ).with_code("usage_window_invalid")
    return since, until


def _row(
    group_by: GroupBy, value: str, summed: list[float], names: dict[str, str]
) -> dict[str, Any]:
    hours, cost = summed
    row: dict[str, Any] = {
        "key": value,
        "gpu_hours": rates.tidy_hours(hours),
        "cost": rates.money(cost),
    }
    if group_by is GroupBy.PROJECT:
        row.update(project_id=value, project=names.get(value))
    elif group_by is GroupBy.GPU_TYPE:
        row["gpu_type"] = value or None
    else:
        row["day"] = value
    return row
