"""Query plans: EXPLAIN (ANALYZE, BUFFERS) of the exact SQL the repository sends.

The statements are captured from SQLAlchemy while the real repository functions run, then
explained with the same parameters, so a plan here is the plan of the code being benchmarked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session

from core.runs import repository
from core.runs.repository import RunFilter


@dataclass(frozen=True)
class Plan:
    name: str
    scans: list[str]  # the plan's scan nodes, outermost first, without cost estimates
    execution_ms: float

    @property
    def uses_indexes(self) -> bool:
        return bool(self.scans) and not any("Seq Scan" in s for s in self.scans)


def _captured(session: Session, call: Callable[[Session], Any]) -> list[tuple[str, Any]]:
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", capture)
    try:
        call(session)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return [(s, p) for s, p in statements if " runs" in s]


def _explain(session: Session, name: str, statement: str, params: Any) -> Plan:
    rows = (
        session.connection()
        .exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        .all()
    )
    lines = [str(r[0]) for r in rows]
    scans = [
        line.split("  (cost=")[0].strip().removeprefix("-> ").strip()
        for line in lines
        if " Scan " in line
    ]
    execution = next(
        (float(x.split(":")[1].split()[0]) for x in lines if x.startswith("Execution Time")), 0.0
    )
    return Plan(name, scans, execution)


def explain_all(
    database_url: str, org_id: str, project_id: str, small_org_id: str, feed: tuple[int, int]
) -> list[Plan]:
    """Plans for the list, its filters, the list's ETag and the change feed over (after, upto].

    `org_id` holds most runs; `small_org_id` few, where the planner should pick the org indexes.
    """
    engine = create_engine(database_url)
    cases: dict[str, Callable[[Session], Any]] = {
        "list ?limit=50": lambda s: repository.list_runs(s, RunFilter(org_id), 50, None),
        "list ?status=running": lambda s: repository.list_runs(
            s, RunFilter(org_id, statuses=["running"]), 50, None
        ),
        "list ?status=failed": lambda s: repository.list_runs(
            s, RunFilter(org_id, statuses=["failed"]), 50, None
        ),
        "list ?labels=team=nlp": lambda s: repository.list_runs(
            s, RunFilter(org_id, labels_equal={"team": "nlp"}), 50, None
        ),
        "list ?labels=exp=e7": lambda s: repository.list_runs(
            s, RunFilter(org_id, labels_equal={"exp": "e7"}), 50, None
        ),
        "list ?project=P": lambda s: repository.list_runs(
            s, RunFilter(org_id, project_id=project_id), 50, None
        ),
        "list ETag (org max version)": lambda s: repository.org_version(s, org_id),
        "list, small org": lambda s: repository.list_runs(s, RunFilter(small_org_id), 50, None),
        "list ETag, small org": lambda s: repository.org_version(s, small_org_id),
        "feed ?changed_since=head-N": lambda s: repository.changed_runs(
            s, org_id, None, feed[0], feed[1], 50
        ),
    }
    plans: list[Plan] = []
    try:
        with Session(engine) as session:
            for name, call in cases.items():
                for statement, params in _captured(session, call):
                    plans.append(_explain(session, name, statement, params))
            session.rollback()
    finally:
        engine.dispose()
    return plans
