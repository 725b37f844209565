"""The yardstick: a bare FastAPI app with one trivial route, served exactly like the real API.

Every Trainport figure in the benchmark is also given as a ratio to this route's throughput,
measured in the same run, so the ratios say what our code costs on top of FastAPI + uvicorn.

Two floors sit beside it, when `TRAINPORT_BENCH_FLOOR_DB` names the benchmark's database: the
bare route plus the least database work a read or a create of a run can do, through the API's
own asyncpg pool (core/aio.py), with no authentication, validation or response model. No
implementation of those endpoints in this stack can be faster than its floor; the benchmark
prints both floors' ratios so the targets can be read against them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import bindparam, select

from core.aio import AsyncDatabase
from core.models import Run
from core.runs import creation
from core.runs.spec import RunCreate
from core.tenants.schemas import Principal, Role

FLOOR_DB = os.environ.get("TRAINPORT_BENCH_FLOOR_DB")
# The run row a GET shows, by primary key: the read floor's one statement.
RUN_ROW = select(Run.__table__).where(Run.id == bindparam("run_id"))
FLOOR_BODY = RunCreate.model_validate({"image": "busybox", "command": ["true"]})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.db = None
    if FLOOR_DB:
        app.state.db = AsyncDatabase(FLOOR_DB, max_size=20)
        await app.state.db.open()
    yield
    if app.state.db is not None:
        await app.state.db.close()


app = FastAPI(title="bare", lifespan=_lifespan)


@app.get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok", "service": "bare"}


@app.get("/bare-sync")
def bare_sync() -> dict[str, str]:
    """The same route as a plain `def`: FastAPI runs it in its threadpool, as most of ours."""
    return {"status": "ok", "service": "bare"}


@app.get("/floor/read/{run_id}")
async def floor_read(request: Request, run_id: str) -> dict[str, Any]:
    """The bare route plus one primary-key read of a run's row."""
    rows = await request.app.state.db.fetch(RUN_ROW, {"run_id": run_id})
    return dict(rows[0])


@app.post("/floor/create/{org_id}/{project_id}")
async def floor_create(request: Request, org_id: str, project_id: str) -> dict[str, Any]:
    """The bare route plus a run's creation statement (core/runs/creation.py), fixed body."""
    caller = Principal(org_id=org_id, key_id="floor", role=Role.MEMBER)
    new = creation.new_run(caller, FLOOR_BODY, project_id)
    rows = await request.app.state.db.write(creation.ONE_STATEMENT, creation.parameters(new))
    return {"id": new.run["id"], "resource_version": rows[0]["resource_version"]}
