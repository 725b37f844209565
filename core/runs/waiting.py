"""The cap on an org's waiting runs (pending + queued): `TRAINPORT_MAX_WAITING_RUNS_PER_ORG`.

Counting an org's waiting runs on every create would put an index scan of up to the cap in
front of the one-statement create (core/runs/creation.py). So each API process counts an org's
waiting runs at most once per `REFRESH_SECONDS`, and adds its own creates in between: the cap
holds to within what the processes create in that interval, which is what a cap against a
runaway client needs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from core.models import Run
from core.ratelimit import RateLimited
from core.runs.states import RunStatus

if TYPE_CHECKING:  # asyncpg only where the API runs on PostgreSQL, not in every worker
    from core.aio import AsyncDatabase

REFRESH_SECONDS = 1.0
WAITING = (RunStatus.PENDING.value, RunStatus.QUEUED.value)
# At most cap + 1 index entries are read, however many runs wait.
_capped = (
    select(Run.id)
    .where(Run.org_id == bindparam("org_id"), Run.status.in_(WAITING))
    .limit(bindparam("cap_plus_one"))
    .subquery()
)
WAITING_COUNT: Select[Any] = select(func.count()).select_from(_capped)


class WaitingRoom:
    """Refuses a new run (429 `queue_full`) once its org has `cap` runs waiting."""

    def __init__(self, cap: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap
        self.clock = clock
        self._counts: dict[str, tuple[int, float]] = {}  # org -> (waiting, counted at)
        self._lock = threading.Lock()

    def stale(self, org_id: str) -> bool:
        counted = self._counts.get(org_id)
        return counted is None or self.clock() - counted[1] > REFRESH_SECONDS

    def require_room(self, session: Session, org_id: str) -> None:
        if self.stale(org_id):
            params = {"org_id": org_id, "cap_plus_one": self.cap + 1}
            self._counted(org_id, int(session.execute(WAITING_COUNT, params).scalar_one()))
        self._take(org_id)

    async def require_room_async(self, db: AsyncDatabase, org_id: str) -> None:
        if self.stale(org_id):
            rows = await db.fetch(WAITING_COUNT, {"org_id": org_id, "cap_plus_one": self.cap + 1})
            self._counted(org_id, int(next(iter(rows[0].values()))))
        self._take(org_id)

    def _counted(self, org_id: str, waiting: int) -> None:
        with self._lock:
            self._counts[org_id] = (waiting, self.clock())

    def _take(self, org_id: str) -> None:
        with self._lock:
            waiting, at = self._counts[org_id]
            if waiting >= self.cap:
                raise RateLimited(
                    f"This organisation already has {self.cap} runs waiting (pending or "
                    "queued), the most TRAINPORT_MAX_WAITING_RUNS_PER_ORG allows; submit more "
                    "once some have started, or cancel some.",
                    retry_after=10,
                    code="queue_full",
                )
            self._counts[org_id] = (waiting + 1, at)
