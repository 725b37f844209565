"""The `/v1/runs` calls as data: what each runs method sends, shared by the sync and async twins.

Keeping the request shapes here (logs in `_logs`) means the two clients cannot drift apart;
`tests/sdk/test_contract.py` holds what they send against the server's OpenAPI document.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from trainport._http import APIRequest, segment
from trainport.models import TERMINAL_STATUSES, Run, RunEvent
from trainport.resources.code import CodeUpload
from trainport.spec import RunSpec
from trainport.workdir import pack

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
RunRef = str | Run
SpecLike = RunSpec | Mapping[str, Any]
LabelSelector = str | Mapping[str, str | None] | Sequence[str]
LONG_POLL_SECONDS = 60  # the server may answer sooner; the client then simply asks again
LONG_POLL_GRACE_SECONDS = 30  # read timeout beyond the long-poll window


def run_id(run: RunRef) -> str:
    return run if isinstance(run, str) else run.id


def run_path(run: RunRef, suffix: str = "") -> str:
    return f"/v1/runs/{segment(run_id(run))}{suffix}"


def merged(spec: SpecLike | None, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The document a create sends: the spec's fields, then the keyword fields over them."""
    found = spec.to_dict() if isinstance(spec, RunSpec) else dict(spec or {})
    found.update(fields)
    return found


def workdir_folder(document: Mapping[str, Any]) -> str | None:
    """The local folder a document's `workdir` names, if it is one (not yet a digest)."""
    workdir = document.get("workdir")
    if workdir is None or (isinstance(workdir, str) and DIGEST.fullmatch(workdir)):
        return None
    return str(workdir)


def with_snapshot(document: Mapping[str, Any], upload: CodeUpload) -> dict[str, Any]:
    """`workdir` as the uploaded snapshot's digest; the packed git tree's commit and dirty
    state as the `code` claim, unless the document makes its own."""
    changed = {**document, "workdir": upload.digest}
    if upload.git is not None and "code" not in document:
        state = upload.git
        changed["code"] = {"repo": state.repo, "commit": state.commit, "dirty": state.dirty}
    return changed


def create(
    spec: SpecLike | None,
    project: str | None,
    idempotency_key: str | None,
    fields: Mapping[str, Any],
) -> APIRequest:
    """`POST /v1/runs` with one Idempotency-Key, reused by every retry of this request."""
    document = merged(spec, fields)
    if project is not None:
        document["project"] = project
    headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    return APIRequest("POST", "/v1/runs", json=document, headers=headers)


def plan(spec: SpecLike | None, project: str | None, fields: Mapping[str, Any]) -> APIRequest:
    """`POST /v1/runs/plan`: the create body; nothing is stored, so it is safe to repeat.
    A `workdir` folder is packed to name its digest, and not uploaded."""
    document = merged(spec, fields)
    if (folder := workdir_folder(document)) is not None:
        document["workdir"] = pack(folder).digest
    if project is not None:
        document["project"] = project
    return APIRequest("POST", "/v1/runs/plan", json=document)


def clone(
    run: RunRef, overrides: Mapping[str, Any] | None, name: str | None, project: str | None
) -> APIRequest:
    """`POST /v1/runs/{id}/clone`. It makes a run each time: not retried once sent."""
    body = {"overrides": dict(overrides or {}), "name": name, "project": project}
    return APIRequest(
        "POST",
        run_path(run, "/clone"),
        json={k: v for k, v in body.items() if v is not None},
        idempotent=False,
    )


def get(run: RunRef, wait: float | None, resource_version: int | None) -> APIRequest:
    if not wait:
        return APIRequest("GET", run_path(run), params={"resource_version": resource_version})
    seconds = max(1, math.ceil(wait))
    return APIRequest(
        "GET",
        run_path(run),
        params={"wait": seconds, "resource_version": resource_version},
        timeout=seconds + LONG_POLL_GRACE_SECONDS,
    )


def label_selector(labels: LabelSelector | None) -> str | None:
    """`{"team": "nlp", "gpu": None}` or `["team=nlp", "gpu"]` as the API's `team=nlp,gpu`."""
    if labels is None or isinstance(labels, str):
        return labels
    if isinstance(labels, Mapping):
        return ",".join(k if v is None else f"{k}={v}" for k, v in labels.items())
    return ",".join(labels)


def list_params(
    *,
    status: str | Iterable[str] | None,
    project: str | None,
    labels: LabelSelector | None,
    name_prefix: str | None,
    name: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    changed_since: int | None,
    limit: int | None,
) -> dict[str, Any]:
    statuses = [status] if isinstance(status, str) else list(status) if status else None
    return {
        "status": statuses,
        "project": project,
        "labels": label_selector(labels),
        "name_prefix": name_prefix,
        "name": name,
        "created_after": created_after,
        "created_before": created_before,
        "changed_since": changed_since,
        "limit": limit,
    }


def list_runs(params: Mapping[str, Any]) -> APIRequest:
    return APIRequest("GET", "/v1/runs", params=params)


def next_list_params(
    params: Mapping[str, Any], next_cursor: str | None, version: int | None
) -> dict[str, Any]:
    """The change feed pages by version, the plain list by cursor."""
    if params.get("changed_since") is not None:
        return {**params, "changed_since": version}
    return {**params, "after": next_cursor}


def update(
    run: RunRef,
    priority: str | None,
    max_duration: str | int | None,
    labels: Mapping[str, str] | None,
    if_match: str | int | None,
) -> APIRequest:
    body = {"priority": priority, "max_duration": max_duration, "labels": labels}
    headers = {"If-Match": f'"{if_match}"' if isinstance(if_match, int) else if_match}
    return APIRequest(
        "PATCH",
        run_path(run),
        json={k: v for k, v in body.items() if v is not None},
        headers={k: v for k, v in headers.items() if v is not None},
    )


def cancel(run: RunRef) -> APIRequest:
    return APIRequest("POST", run_path(run, "/cancel"))


def delete(run: RunRef) -> APIRequest:
    return APIRequest("DELETE", run_path(run))


def events(run: RunRef, limit: int | None, after: str | None = None) -> APIRequest:
    return APIRequest("GET", run_path(run, "/events"), params={"limit": limit, "after": after})


def runs(body: Any) -> list[Run]:
    return [Run.model_validate(r) for r in body["data"]]


def run_events(body: Any) -> list[RunEvent]:
    return [RunEvent.model_validate(e) for e in body["data"]]


def wait_targets(until: str | Iterable[str] | None) -> frozenset[str]:
    if until is None:
        return frozenset(TERMINAL_STATUSES)
    return frozenset([until] if isinstance(until, str) else until)
