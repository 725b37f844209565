"""The pure rules of issue 20: metering by day, rates from settings, and the planner's budget
check on a snapshot (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from core.scheduling.planner import (
    Candidate,
    ClusterState,
    Needs,
    QueueReason,
    Snapshot,
    plan_admissions,
)
from core.settings import Settings
from core.usage.metering import by_day, gpu_seconds
from core.usage.rates import RateCard

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def test_an_attempt_is_split_at_utc_midnights() -> None:
    start = datetime(2026, 3, 9, 22, 30, tzinfo=UTC)
    parts = list(by_day(start, start + timedelta(hours=27)))
    assert [(day.isoformat(), seconds / 3600) for day, seconds in parts] == [
        ("2026-03-09", 1.5),
        ("2026-03-10", 24.0),
        ("2026-03-11", 1.5),
    ]


def test_only_started_attempts_with_gpus_are_metered_and_running_ones_to_now() -> None:
    assert gpu_seconds(8, None, None, NOW) == 0.0
    assert gpu_seconds(0, NOW - timedelta(hours=1), None, NOW) == 0.0
    assert gpu_seconds(4, NOW - timedelta(hours=1), None, NOW) == 4 * 3600
    assert gpu_seconds(4, NOW, NOW - timedelta(hours=1), NOW) == 0.0  # never negative


def test_rates_read_as_pairs_or_json_and_match_any_case() -> None:
    pairs = RateCard.of(Settings(gpu_hour_rates="H100=2.5, A100=1.2", currency="EUR"))
    assert (pairs.rate("h100"), pairs.rate("A100"), pairs.rate("l4")) == (2.5, 1.2, 0.0)
    assert pairs.currency == "EUR"
    fallback = RateCard.of(Settings(gpu_hour_rates='{"H100": 3, "*": 1}'))
    assert (fallback.rate("H100"), fallback.rate("l4"), fallback.rate(None)) == (3.0, 1.0, 1.0)
    assert fallback.cost("h100", 2.5) == 7.5
    for bad in ("H100", "H100=-1", "=2"):
        with pytest.raises(ValidationError):
            Settings(gpu_hour_rates=bad)


def candidate(run_id: str, org: str, project: str, gpus: int, waited_s: float = 0) -> Candidate:
    needs = Needs(1, gpus, "h100", 0)
    return Candidate(run_id, org, project, "normal", NOW - timedelta(seconds=waited_s), needs)


def snapshot(*candidates: Candidate, exhausted: dict[tuple[str, str], str]) -> Snapshot:
    return Snapshot(
        candidates=list(candidates),
        clusters=[ClusterState("gpu", 1, {"h100": 8}, None)],
        scopes={},
        usage={},
        now=NOW,
        starvation_seconds=600,
        budget_exhausted=exhausted,
    )


def test_a_spent_hard_budget_blocks_its_scope_and_reserves_nothing() -> None:
    spent = {("acme", "vision"): "the hard budget of project vision is spent"}
    plan = plan_admissions(
        snapshot(
            candidate("starved", "acme", "vision", 8, waited_s=3600),  # would reserve all 8
            candidate("same-org", "acme", "nlp", 4),
            candidate("other-org", "beta", "default", 4),
            exhausted=spent,
        )
    )
    assert {c.run_id for c, _ in plan.admitted} == {"same-org", "other-org"}
    blocker = plan.blocked["starved"]
    assert blocker.reason is QueueReason.BUDGET_EXHAUSTED
    assert "project vision" in blocker.detail
    assert plan.position("starved", lambda owner: True) == 1


def test_a_spent_org_budget_blocks_every_project_of_the_org() -> None:
    plan = plan_admissions(
        snapshot(
            candidate("a", "acme", "vision", 1),
            candidate("b", "acme", "nlp", 1),
            exhausted={("acme", ""): "the hard budget of the org is spent"},
        )
    )
    assert plan.admitted == []
    assert {r.reason for r in plan.blocked.values()} == {QueueReason.BUDGET_EXHAUSTED}
