"""Runs addressed by name: `client.runs.get("my-run")` as well as by id.

A run's id (`run_...`) is unique; its name is unique only if nobody reused it. A name (names are
DNS labels, so never look like an id) is looked up with `GET /v1/runs?name=` among the runs the
key can see (its organisation, or its project for a project-scoped key): one match is that run,
none is `RunNameNotFound`, several are `AmbiguousRunName`, which lists them so the caller can
pick an id. Ids and `Run` objects cost no request.
"""

from __future__ import annotations

from typing import Any

from trainport._http import APIRequest
from trainport.errors import AmbiguousRunName, RunNameNotFound
from trainport.models import Run
from trainport.resources._base import AsyncResource, SyncResource
from trainport.resources._run_calls import RunRef, run_id, runs

ID_PREFIX = "run_"
CANDIDATES_SHOWN = 10


def is_name(run: str) -> bool:
    return not run.startswith(ID_PREFIX)


def lookup(name: str) -> APIRequest:
    return APIRequest("GET", "/v1/runs", params={"name": name, "limit": CANDIDATES_SHOWN})


def the_one(name: str, body: Any) -> Run:
    """The only run in a `?name=` page, or the error that says why there is not one."""
    found = runs(body)
    if len(found) == 1:
        return found[0]
    if not found:
        raise RunNameNotFound(
            f"No run named {name!r} among the runs this key can see (a run id starts with "
            f"{ID_PREFIX!r}).",
            name,
            found,
        )
    listed = ", ".join(f"{r.id} ({r.status}, created {r.created_at:%Y-%m-%d %H:%M})" for r in found)
    more = " and more" if body.get("has_more") else ""
    raise AmbiguousRunName(
        f"{len(found)}{'+' if more else ''} runs are named {name!r}: {listed}{more}. "
        "Give the id of the one you mean.",
        name,
        found,
    )


class SyncRunResource(SyncResource):
    def resolve(self, run: RunRef) -> str:
        """The id of `run`: a `Run`, an id (`run_...`), or a name unique among your runs."""
        if isinstance(run, str) and is_name(run):
            return the_one(run, self._http.json(lookup(run))).id
        return run_id(run)


class AsyncRunResource(AsyncResource):
    async def resolve(self, run: RunRef) -> str:
        """The id of `run`: a `Run`, an id, or a name unique among your runs; see the sync twin."""
        if isinstance(run, str) and is_name(run):
            return the_one(run, await self._http.json(lookup(run))).id
        return run_id(run)
