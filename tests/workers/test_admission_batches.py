"""A burst of schedule requests is admitted in a few passes, not one pass each (issue 17)."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.models import Run
from core.settings import Settings
from tests.factories import create_run, make_tenant
from workers.scheduler import PassQueue, QueuedPasses

REQUESTS = 12


def test_requests_made_while_a_pass_runs_join_the_next_pass(
    fresh_url: str, fresh_client: TestClient, factory: sessionmaker[Session]
) -> None:
    tenant = make_tenant(fresh_client)
    run_ids = [create_run(fresh_client, tenant)["id"] for _ in range(REQUESTS)]
    settings = Settings(database_url=fresh_url, local_cpu_slots=REQUESTS)
    queue, start = PassQueue(), threading.Barrier(REQUESTS)
    results: list[QueuedPasses] = []

    def request(run_id: str) -> None:
        start.wait()  # every schedule task of the burst at once, as a worker's threads get them
        results.append(queue.run(factory, settings, run_id))

    threads = [threading.Thread(target=request, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with session_scope(factory) as session:
        statuses = session.scalars(select(Run.status).where(Run.id.in_(run_ids))).all()
    assert sorted(statuses) == ["starting"] * REQUESTS  # none dropped, each admitted once
    assert sorted(a.run_id for r in results for a in r.admitted) == sorted(run_ids)
    assert sum(r.passes for r in results) < REQUESTS / 2
