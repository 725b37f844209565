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

from core.runs import reads
from core.runs.repository import RunFilter
from core.tenants.schemas import Principal, Role


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
    caller, small = (Principal(org, "key_bench", Role.ADMIN) for org in (org_id, small_org_id))

    def listed(who: Principal, **criteria: Any) -> Callable[[Session], Any]:
        return lambda s: reads.list_page(
            s.connection(), who, RunFilter(who.org_id, **criteria), 50, None
        )

    cases: dict[str, Callable[[Session], Any]] = {
        "list ?limit=50": listed(caller),
        "list ?status=running": listed(caller, statuses=["running"]),
        "list ?status=failed": listed(caller, statuses=["failed"]),
        "list ?labels=team=nlp": listed(caller, labels_equal={"team": "nlp"}),
        "list ?labels=exp=e7": listed(caller, labels_equal={"exp": "e7"}),
        "list ?project=P": listed(caller, project_id=project_id),
        "list ETag (org max version)": lambda s: reads.org_version(s.connection(), caller),
        "list, small org": listed(small),
        "list ETag, small org": lambda s: reads.org_version(s.connection(), small),
        # the feed from version feed[0], up to the newest (feed[1] when nothing wrote since)
        "feed ?changed_since=head-N": lambda s: reads.changes_page(
            s.connection(), caller, feed[0], 50
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
