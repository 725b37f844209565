"""Budgets: a spending limit per org or project, per calendar month (UTC) or in total.

Spend is metered as usage is (core/usage/service.py): ended attempts from the rollup plus
running ones to now. Every budget raises an alert at 80% and at 100% of its amount, each once
per period (the `budget_alerts` row is the event; its unique key makes a second pass a no-op);
the scheduler records them on every pass (`record_alerts`). A `hard` budget also stops
admission at 100%: its scope's queued runs stay queued with the queue answer
`budget_exhausted` (`exhausted_scopes`, read by core/scheduling/snapshot.py), as Kueue keeps a
workload pending on an exhausted quota, and are admitted again when the next month starts or
an admin raises or removes the budget. Runs already running are not stopped, so a hard budget
can be overrun by what was running when it was reached.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.ids import new_id
from core.models import Budget, BudgetAlert, utcnow
from core.scheduling.planner import Owner
from core.tenants import service as tenants
from core.tenants.schemas import Principal, Role
from core.usage import rates, repository
from core.usage.rates import RateCard
from core.usage.schemas import (
    BudgetAlertList,
    BudgetAlertOut,
    BudgetIn,
    BudgetList,
    BudgetOut,
    BudgetPeriod,
    BudgetUnit,
    Enforcement,
    GroupBy,
)
from core.usage.service import tally
from core.webhooks import events as webhook_events
from core.webhooks.schemas import EventType

log = logging.getLogger("trainport.budgets")
THRESHOLDS = (80, 100)  # percent of the amount at which a budget alerts
EVER = date(1970, 1, 1)  # the period start of a `total` budget


def period_start(period: str, now: datetime) -> date:
    return now.date().replace(day=1) if period == BudgetPeriod.MONTHLY.value else EVER


@dataclass(frozen=True)
class Standing:
    """A budget and what its scope has spent in the current period."""

    budget: Budget
    period_start: date
    spent: float

    @property
    def fraction(self) -> float:
        return self.spent / self.budget.amount if self.budget.amount else 1.0

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget.amount

    def describe(self, scope: str, currency: str) -> str:
        unit = currency if self.budget.unit == BudgetUnit.CURRENCY.value else "GPU-hours"
        period = "this month" if self.budget.period == BudgetPeriod.MONTHLY.value else "in total"
        return (
            f"the {self.budget.enforcement} budget of {scope} is spent: "
            f"{self.spent:,.2f} of {self.budget.amount:,.2f} {unit} {period}"
        )


def standings(
    session: Session, budgets: list[Budget], now: datetime, card: RateCard
) -> list[Standing]:
    """Each budget's spend in its current period: one grouped read per distinct period."""
    # (org, project or "" for the whole org, period start) -> [GPU-hours, cost]
    spent: dict[tuple[str, str, date], list[float]] = defaultdict(lambda: [0.0, 0.0])
    orgs = sorted({b.org_id for b in budgets})
    for start in {period_start(b.period, now) for b in budgets}:
        found = tally(session, orgs, GroupBy.PROJECT, start, None, now)
        for (org, project, gpu_type), seconds in found.items():
            hours = seconds / 3600.0
            for scope in ((org, "", start), (org, project, start)):
                spent[scope][0] += hours
                spent[scope][1] += card.rate(gpu_type or None) * hours
    standings = []
    for budget in budgets:
        start = period_start(budget.period, now)
        hours, cost = spent.get((budget.org_id, budget.project_id, start), (0.0, 0.0))
        amount = cost if budget.unit == BudgetUnit.CURRENCY.value else hours
        standings.append(Standing(budget, start, rates.money(amount)))
    return standings


def exhausted_scopes(session: Session, now: datetime, card: RateCard) -> dict[Owner, str]:
    """Scopes whose hard budget is spent, and why: the scheduler admits none of their runs."""
    hard = [b for b in repository.budgets(session) if b.enforcement == Enforcement.HARD.value]
    if not hard:
        return {}
    names = _scope_names(session, hard)
    return {
        (s.budget.org_id, s.budget.project_id): s.describe(names[s.budget.id], card.currency)
        for s in standings(session, hard, now, card)
        if s.exhausted
    }


def record_alerts(session: Session, now: datetime, card: RateCard) -> list[int]:
    """Record every 80% / 100% crossing not yet recorded this period; the new alerts' ids."""
    budgets = list(repository.budgets(session))
    new = []
    for standing in standings(session, budgets, now, card) if budgets else []:
        for threshold in THRESHOLDS:
            if standing.fraction * 100 >= threshold:
                alert_id = _record(session, standing, threshold)
                new += [alert_id] if alert_id is not None else []
    return new


def _record(session: Session, standing: Standing, threshold: int) -> int | None:
    """Insert the alert unless this period already has it; its id when this call inserted it."""
    budget = standing.budget
    key = {
        "budget_id": budget.id,
        "generation": budget.generation,
        "period_start": standing.period_start,
        "threshold": threshold,
    }
    dialect = session.get_bind().dialect.name
    insert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(BudgetAlert)
    statement = insert.values(
        **key,
        org_id=budget.org_id,
        project_id=budget.project_id,
        spent=standing.spent,
        amount=budget.amount,
        unit=budget.unit,
        enforcement=budget.enforcement,
        created_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=list(key))
    alert_id: int | None = session.execute(statement.returning(BudgetAlert.id)).scalar()
    if alert_id is not None:
        data = {**key, "period_start": standing.period_start.isoformat(), "alert_id": alert_id}
        data |= {"project_id": budget.project_id or None, "spent": standing.spent}
        data |= {"amount": budget.amount, "unit": budget.unit, "enforcement": budget.enforcement}
        project = budget.project_id or None
        webhook_events.emit(
            session, budget.org_id, project, EventType.BUDGET_THRESHOLD_REACHED, data
        )
        log.warning(
            "budget %s of org %s project %r reached %d%% (%.2f of %.2f %s)",
            budget.id, budget.org_id, budget.project_id, threshold,
            standing.spent, budget.amount, budget.unit,
        )  # fmt: skip
    return alert_id


def _scope_names(session: Session, budgets: list[Budget]) -> dict[str, str]:
    names: dict[str, str] = {}
    projects: dict[str, dict[str, str]] = {}
    for budget in budgets:
        if not budget.project_id:
            names[budget.id] = "the org"
            continue
        if budget.org_id not in projects:
            projects[budget.org_id] = repository.project_names(session, budget.org_id)
        name = projects[budget.org_id].get(budget.project_id, budget.project_id)
        names[budget.id] = f"project {name}"
    return names


# -- the API: admins set, read and delete budgets; alerts are listed --------------------------


def _own_org(caller: Principal, org_id: str) -> None:
    if org_id != caller.org_id:
        raise NotFound(f"Organisation {org_id} was not found.")


def _project_id(session: Session, caller: Principal, project: str | None) -> str:
    if project is None:
        if caller.project_id:  # a project-scoped key cannot touch the org-wide budget
            raise NotFound("The org-wide budget is not visible to a project-scoped key.")
        return ""
    return tenants.resolve_project(session, caller, project).id


def list_budgets(session: Session, caller: Principal, org_id: str, card: RateCard) -> BudgetList:
    _own_org(caller, org_id)
    caller.require(Role.ADMIN)
    rows = [
        b for b in repository.budgets(session, org_id) if caller.project_id in (None, b.project_id)
    ]
    found = standings(session, rows, utcnow(), card)
    return BudgetList(data=[_out(s, card) for s in found])


def get_budget(
    session: Session, caller: Principal, org_id: str, card: RateCard, project: str | None = None
) -> BudgetOut:
    _own_org(caller, org_id)
    caller.require(Role.ADMIN)
    budget = _existing(session, org_id, _project_id(session, caller, project))
    return _out(standings(session, [budget], utcnow(), card)[0], card)


def set_budget(
    session: Session,
    caller: Principal,
    org_id: str,
    body: BudgetIn,
    card: RateCard,
    project: str | None = None,
) -> BudgetOut:
    """Create or replace the scope's budget; a new amount or unit re-arms this period's alerts."""
    _own_org(caller, org_id)
    caller.require(Role.ADMIN)
    budget = _budget_row(session, org_id, _project_id(session, caller, project), body)
    changed = (budget.amount, budget.unit, budget.period) != (
        body.amount, body.unit.value, body.period.value
    )  # fmt: skip
    budget.amount, budget.unit = body.amount, body.unit.value
    budget.period, budget.enforcement = body.period.value, body.enforcement.value
    budget.generation += 1 if changed else 0
    budget.updated_by, budget.updated_at = caller.key_id, utcnow()
    session.flush()
    return _out(standings(session, [budget], utcnow(), card)[0], card)


def delete_budget(
    session: Session, caller: Principal, org_id: str, project: str | None = None
) -> None:
    _own_org(caller, org_id)
    caller.require(Role.ADMIN)
    session.delete(_existing(session, org_id, _project_id(session, caller, project)))
    session.flush()


def list_alerts(session: Session, caller: Principal, org_id: str, limit: int) -> BudgetAlertList:
    _own_org(caller, org_id)
    caller.require(Role.ADMIN)
    rows = repository.alerts(session, org_id, caller.project_id, limit)
    return BudgetAlertList(data=[BudgetAlertOut.model_validate(row) for row in rows])


def _existing(session: Session, org_id: str, project_id: str) -> Budget:
    budget = repository.get_budget(session, org_id, project_id)
    if budget is None:
        what = "this project" if project_id else "the org"
        raise NotFound(f"No budget is set for {what}.")
    return budget


def _budget_row(session: Session, org_id: str, project_id: str, body: BudgetIn) -> Budget:
    budget = repository.get_budget(session, org_id, project_id)
    if budget is not None:
        return budget
    try:
        with session.begin_nested():
            budget = Budget(
                id=new_id("bdg"),
                org_id=org_id,
                project_id=project_id,
                amount=body.amount,
                unit=body.unit.value,
                period=body.period.value,
                enforcement=body.enforcement.value,
                generation=1,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
            session.add(budget)
        return budget
    except IntegrityError:  # a concurrent PUT created it first; update that row
        return _budget_row(session, org_id, project_id, body)


def _out(standing: Standing, card: RateCard) -> BudgetOut:
    budget = standing.budget
    currency = card.currency if budget.unit == BudgetUnit.CURRENCY.value else None
    return BudgetOut(
        id=budget.id,
        org_id=budget.org_id,
        project_id=budget.project_id or None,
        amount=budget.amount,
        unit=BudgetUnit(budget.unit),
        period=BudgetPeriod(budget.period),
        enforcement=Enforcement(budget.enforcement),
        currency=currency,
        period_start=standing.period_start,
        spent=standing.spent,
        fraction=round(standing.fraction, 6),
        exhausted=standing.exhausted,
        updated_at=budget.updated_at,
    )
