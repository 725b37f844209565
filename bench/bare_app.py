"""The yardstick: a bare FastAPI app with one trivial route, served exactly like the real API.

Every Trainport figure in the benchmark is also given as a ratio to this route's throughput,
measured in the same run, so the ratios say what our code costs on top of FastAPI + uvicorn.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(title="bare")


@app.get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok", "service": "bare"}


@app.get("/bare-sync")
def bare_sync() -> dict[str, str]:
    """The same route as a plain `def`: FastAPI runs it in its threadpool, as most of ours."""
    return {"status": "ok", "service": "bare"}
