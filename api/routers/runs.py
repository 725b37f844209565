"""`/v1/runs`: submit, read, list, follow, edit, cancel and delete training runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from api.deps import Caller, RunCaller, SessionDep, SettingsDep
from api.etags import list_etag, matches, parse_if_match, run_etag
from api.yaml_body import YamlBodyRoute
from core.pagination import MAX_PAGE_SIZE
from core.runs import service
from core.runs.repository import RunFilter
from core.runs.schemas import RunEventPage, RunOut, RunPage, RunPatch
from core.runs.spec import RunCreate
from core.runs.states import RunStatus
from core.runs.watch import wait_for_change

router = APIRouter(prefix="/v1/runs", tags=["runs"], route_class=YamlBodyRoute)
RunId = Annotated[str, Path(min_length=1, max_length=64, description="a run id, `run_...`")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the last page")]
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)"}
}


def _run_response(response: Response, run: RunOut) -> RunOut:
    response.headers["ETag"] = run_etag(run.resource_version)
    return run


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunOut)
def create_run(
    body: RunCreate,
    caller: Caller,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> RunOut:
    """Submit a run (JSON or YAML). Repeat with the same `Idempotency-Key` to retry safely."""
    created = service.create_run(
        session, caller, body, idempotency_key, settings.idempotency_ttl_hours
    )
    response.headers["Location"] = f"/v1/runs/{created.run.id}"
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _run_response(response, service.with_queue(session, created.run, settings))


@router.get("", response_model=RunPage, responses=NOT_MODIFIED)
def list_runs(
    request: Request,
    caller: Caller,
    session: SessionDep,
    response: Response,
    status_: Annotated[list[RunStatus] | None, Query(alias="status", max_length=8)] = None,
    project: Annotated[str | None, Query(max_length=63)] = None,
    labels: Annotated[str | None, Query(max_length=1024, description="`k=v,k2`")] = None,
    name_prefix: Annotated[str | None, Query(max_length=40)] = None,
    created_after: AwareDatetime | None = None,
    created_before: AwareDatetime | None = None,
    changed_since: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Limit = 50,
    after: Cursor = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> RunPage | Response:
    """Newest first, keyset-paged. With `changed_since`, only runs changed after that version."""
    etag = list_etag(service.list_version(session, caller), request)
    if matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    if changed_since is not None:
        return service.changes_since(session, caller, changed_since, limit, project)
    equal, present = service.parse_label_selector(labels or "")
    criteria = RunFilter(
        org_id=caller.org_id,
        project_id=project,
        statuses=[s.value for s in status_ or []],
        labels_equal=equal,
        labels_present=present,
        name_prefix=name_prefix,
        created_after=created_after,
        created_before=created_before,
    )
    return service.list_runs(session, caller, criteria, limit, after)


@router.get("/{run_id}", response_model=RunOut, responses=NOT_MODIFIED)
async def get_run(
    run_id: RunId,
    caller: RunCaller,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    wait: Annotated[int, Query(ge=0, le=600, description="long-poll up to N seconds")] = 0,
    resource_version: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> RunOut | Response:
    """A run. With `wait`, answers as soon as it changes past `resource_version`."""

    def read_version() -> int | None:
        try:
            return service.run_version(session, caller, run_id)
        finally:
            if wait:  # between checks a long poll holds no pooled connection
                session.commit()

    if wait:
        # End the auth transaction now: a long poll must not sit on a pooled connection.
        # A plain read stays in it: one transaction, fewer round trips and threadpool hops.
        await run_in_threadpool(session.commit)
        baseline = resource_version
        if baseline is None:
            baseline = await run_in_threadpool(read_version) or 0
        timeout = min(wait, settings.long_poll_max_seconds)
        await wait_for_change(run_id, baseline, timeout, lambda: run_in_threadpool(read_version))
    elif if_none_match:
        version = await run_in_threadpool(read_version)
        if version is not None and matches(if_none_match, run_etag(version)):
            return Response(status_code=304, headers={"ETag": run_etag(version)})
    run = await run_in_threadpool(lambda: service.describe_run(session, caller, run_id, settings))
    return _run_response(response, run)


@router.patch("/{run_id}", response_model=RunOut)
def update_run(
    run_id: RunId,
    patch: RunPatch,
    caller: Caller,
    session: SessionDep,
    response: Response,
    if_match: Annotated[str | None, Header(max_length=64)] = None,
) -> RunOut:
    """Change priority, max_duration or labels. Send `If-Match` to refuse lost updates (412)."""
    run = service.update_run(session, caller, run_id, patch, parse_if_match(if_match))
    return _run_response(response, RunOut.model_validate(run))


@router.post("/{run_id}/cancel", response_model=RunOut)
def cancel_run(run_id: RunId, caller: Caller, session: SessionDep, response: Response) -> RunOut:
    """Cancel: at once if it has not started, else `stopping` until its processes are gone."""
    run = service.cancel_run(session, caller, run_id)
    return _run_response(response, RunOut.model_validate(run))


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_run(run_id: RunId, caller: Caller, session: SessionDep) -> Response:
    """Delete a finished run (409 while it is still active)."""
    service.delete_run(session, caller, run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{run_id}/events", response_model=RunEventPage)
def list_run_events(
    run_id: RunId, caller: Caller, session: SessionDep, limit: Limit = 50, after: Cursor = None
) -> RunEventPage:
    """The run's history, oldest first: every status change and edit."""
    return service.list_events(session, caller, run_id, limit, after)
