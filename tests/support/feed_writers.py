"""Writers for the change feed's and the event stream's tests: runs created, edited, cancelled
and deleted over HTTP by one writer's share, a single fast write, and waiting until a concurrent
writer queues behind a held transaction's lock.
"""

from __future__ import annotations

import threading
import time

import httpx
from sqlalchemy import Engine, text

from tests.factories import Tenant, run_spec

RUNS_PER_WRITER = 8
LOCK_WAIT_TIMEOUT_S = 10.0


def write_runs(url: str, tenant: Tenant, index: int) -> None:
    """One writer's share: create runs, edit each twice, cancel half, delete a quarter."""
    with httpx.Client(base_url=url, headers=tenant.headers, timeout=30) as http:
        ids = []
        for n in range(RUNS_PER_WRITER):
            created = http.post("/v1/runs", json=run_spec(name=f"w{index}-{n}"))
            created.raise_for_status()
            ids.append(created.json()["id"])
        for priority in ["high", "low"]:
            for run_id in ids:
                http.patch(f"/v1/runs/{run_id}", json={"priority": priority}).raise_for_status()
        for run_id in ids[::2]:
            http.post(f"/v1/runs/{run_id}/cancel").raise_for_status()
        for run_id in ids[::4]:
            assert http.delete(f"/v1/runs/{run_id}").status_code == 204


def write_one(url: str, tenant: Tenant) -> None:
    with httpx.Client(base_url=url, headers=tenant.headers, timeout=30) as http:
        http.post("/v1/runs", json=run_spec(name="fast")).raise_for_status()


def blocked_on_a_lock(engine: Engine, writer: threading.Thread) -> bool:
    """True once another backend waits for a lock (or the writer finished without waiting)."""
    deadline = time.monotonic() + LOCK_WAIT_TIMEOUT_S
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with engine.connect() as conn:  # outside the held transaction
            if conn.execute(query).scalar_one() > 0:
                return True
        if not writer.is_alive():
            return False
        time.sleep(0.02)  # a bounded poll: Postgres offers no event for "a backend waits"
    raise AssertionError("the concurrent writer neither waited nor finished")
