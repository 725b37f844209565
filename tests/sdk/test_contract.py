"""The SDK and the server agree: every request the SDK sends matches an operation of the server's
`/openapi.json` (method, path, query and header parameters, body fields), and every field the
SDK's models declare is in the server's response schema.

Requests are recorded from a real session in which every public resource method is called;
a method added to the SDK without a call here fails `test_every_sdk_method_is_exercised`.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

import trainport
from core.log_archive import LogArchive
from tests.factories import make_tenant, write_log
from trainport.models import QueueInfo
from trainport.resources import ApiKeys, Datasets, Projects, ProvenanceResource, Runs

SPEC = {"image": "python:3.11-slim", "command": ["python", "-c", "print('hi')"]}
PLAIN_HEADERS = {
    "accept", "accept-encoding", "authorization", "connection", "content-length",
    "content-type", "host", "user-agent",
}  # fmt: skip


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: frozenset[str]
    headers: frozenset[str]
    body: Any


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.called: set[str] = set()

    def hook(self, request: httpx.Request) -> None:
        kind = request.headers.get("content-type", "")
        # A multipart upload streams its files: its parts are not JSON fields to check.
        body = json.loads(request.content) if kind.startswith("application/json") else None
        self.sent.append(
            Sent(
                request.method,
                request.url.path,
                frozenset(request.url.params.keys()),
                frozenset(k.lower() for k in request.headers) - PLAIN_HEADERS,
                body,
            )
        )

    def call(self, name: str, action: Callable[[], Any]) -> Any:
        self.called.add(name)
        return action()


@pytest.fixture(scope="module")
def openapi(api_url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{api_url}/openapi.json").json()
    return document


def exercise(
    client: trainport.Client, record: Recorder, log_dir: Path, archive: LogArchive
) -> None:
    """Call every public resource method once, with every parameter it can send."""
    c = record.call
    c("me", client.me)
    project = c("projects.create", lambda: client.projects.create("contract", description="d"))
    c("projects.get", lambda: client.projects.get(project.id))
    c("projects.list", client.projects.list)
    key = c(
        "api_keys.create",
        lambda: client.api_keys.create("k", role="viewer", project="contract", expires_in_days=1),
    )
    c("api_keys.list", client.api_keys.list)
    c("api_keys.revoke", lambda: client.api_keys.revoke(key.id))
    run = c("runs.create", lambda: client.runs.create(SPEC, project="contract", labels={"a": "b"}))
    c("runs.get", lambda: client.runs.get(run, wait=1, resource_version=run.resource_version))
    c("runs.list", lambda: list(client.runs.list(
        status=["pending"], project="contract", labels={"a": "b"}, name_prefix="r",
        created_after=run.created_at, created_before=run.created_at, limit=1,
    )))  # fmt: skip
    c("runs.list(changed_since)", lambda: list(client.runs.list(changed_since=0, limit=1)))
    c("runs.resolve", lambda: client.runs.resolve(run.name))  # GET /v1/runs?name=
    c("runs.update", lambda: client.runs.update(
        run, priority="high", max_duration="1h", labels={"a": "c"}, if_match=run.etag
    ))  # fmt: skip
    write_log(archive, run.id, 0, 0)
    c("runs.logs", lambda: list(client.runs.logs(run, attempt=0, rank=0, tail=5, follow=True)))
    c("runs.cancel", lambda: client.runs.cancel(run))
    c("runs.wait", lambda: client.runs.wait(run, until={"cancelled"}, timeout=5))
    c("runs.events", lambda: list(client.runs.events(run, limit=1)))
    c("runs.plan", lambda: client.runs.plan(SPEC, project="contract", labels={"a": "b"}))
    c("runs.clone", lambda: client.runs.clone(
        run, {"labels.team": "nlp"}, name="again", project="contract"
    ))  # fmt: skip
    exercise_training(client, record, run, log_dir)
    c("runs.delete", lambda: client.runs.delete(run))


def refused(action: Callable[[], Any]) -> Any:
    """Calls whose answer here is an error (a run that never started): the request is what
    the contract is about."""
    try:
        return action()
    except trainport.TrainportError as exc:
        return exc


def exercise_training(
    client: trainport.Client, record: Recorder, run: trainport.Run, log_dir: Path
) -> None:
    """Metrics, checkpoints, provenance and datasets (docs/runtime-api.md)."""
    c = record.call
    c("runs.metrics", lambda: client.runs.metrics(run, name=["loss"], max_points=10))
    c("runs.checkpoints", lambda: client.runs.checkpoints(run))
    c("runs.download_checkpoint", lambda: refused(
        lambda: client.runs.download_checkpoint(run, log_dir / "download", step=1)
    ))  # fmt: skip
    c("runs.provenance", lambda: refused(lambda: client.runs.provenance(run)))
    c("runs.sample", lambda: refused(lambda: client.runs.sample(run, "def ")))  # not an lm run
    c("runs.outputs", lambda: client.runs.outputs(run, attempt=1))
    c("runs.download_outputs", lambda: client.runs.download_outputs(run, log_dir / "outputs"))
    c("provenance.verify", lambda: client.provenance.verify({"run_id": run.id}, signature="00"))
    c("provenance.keys", client.provenance.keys)
    folder = log_dir / "contract-dataset"
    folder.mkdir(exist_ok=True)
    (folder / "a.txt").write_text("a")
    c("datasets.create", lambda: client.datasets.create("contract", description="d"))
    version = c("datasets.push", lambda: client.datasets.push("contract", folder))
    c("datasets.list", client.datasets.list)
    c("datasets.get", lambda: client.datasets.get("contract"))
    c("datasets.manifest", lambda: client.datasets.manifest("contract", version.digest))
    c("datasets.push_direct", lambda: refused(  # local storage here: 409, use push
        lambda: client.datasets.push_direct("contract", folder)
    ))  # fmt: skip
    c("datasets.register", lambda: refused(
        lambda: client.datasets.register("contract", "s3://no-such-bucket/data/")
    ))  # fmt: skip


@pytest.fixture(scope="module")
def recorded(api_url: str, client: TestClient, log_dir: Path, archive: LogArchive) -> Recorder:
    tenant = make_tenant(client)
    record = Recorder()
    with (
        httpx.Client(event_hooks={"request": [record.hook]}) as http,
        trainport.Client(base_url=api_url, api_key=tenant.key, http_client=http) as sdk,
    ):
        exercise(sdk, record, log_dir, archive)
    return record


def find_operation(openapi: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    for template, operations in openapi["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            operation: dict[str, Any] = operations[method.lower()]
            return operation
    return None


def resolve(openapi: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = openapi["components"]["schemas"][name]
    return schema


def test_every_sdk_method_is_exercised(recorded: Recorder) -> None:
    public = {
        f"{prefix}.{name}"
        for prefix, resource in (
            ("runs", Runs),
            ("projects", Projects),
            ("api_keys", ApiKeys),
            ("datasets", Datasets),
            ("provenance", ProvenanceResource),
        )
        for name, _ in inspect.getmembers(resource, inspect.isfunction)
        if not name.startswith("_")
    }
    assert public | {"me"} <= recorded.called


def test_every_request_matches_an_operation_of_the_openapi_document(
    recorded: Recorder, openapi: dict[str, Any]
) -> None:
    assert recorded.sent
    for sent in recorded.sent:
        operation = find_operation(openapi, sent.method, sent.path)
        assert operation is not None, f"{sent.method} {sent.path} is not in /openapi.json"
        declared = {(p["in"], p["name"].lower()) for p in operation.get("parameters", [])}
        for name in sent.query:
            assert ("query", name.lower()) in declared, f"{sent.method} {sent.path} ?{name}"
        for name in sent.headers:
            assert ("header", name) in declared, f"{sent.method} {sent.path} header {name}"
        if sent.body is not None:
            content = operation["requestBody"]["content"]["application/json"]
            fields = set(resolve(openapi, content["schema"])["properties"])
            assert set(sent.body) <= fields, f"{sent.method} {sent.path} body {set(sent.body)}"


@pytest.mark.parametrize(
    ("model", "schema"),
    [
        (trainport.Run, "RunOut"),
        (trainport.RunEvent, "RunEventOut"),
        (trainport.Project, "ProjectOut"),
        (trainport.ApiKey, "ApiKeyOut"),
        (trainport.ApiKeyCreated, "ApiKeyCreated"),
        (trainport.Organization, "OrganizationOut"),
        (trainport.Me, "Me"),
        (QueueInfo, "QueueInfo"),
        (trainport.Metrics, "SeriesSet"),
        (trainport.MetricSeries, "Series"),
        (trainport.Checkpoint, "CheckpointOut"),
        (trainport.Provenance, "SignedRecord"),
        (trainport.Verdict, "Verdict"),
        (trainport.Dataset, "DatasetOut"),
        (trainport.DatasetVersion, "DatasetVersionOut"),
        (trainport.Manifest, "Manifest"),
    ],
)
def test_every_model_field_is_in_the_server_response_schema(
    model: type[BaseModel], schema: str, openapi: dict[str, Any]
) -> None:
    document = openapi["components"]["schemas"][schema]
    assert set(model.model_fields) <= set(document["properties"])
    # The SDK never insists on a field the server may leave out.
    required_by_sdk = {name for name, f in model.model_fields.items() if f.is_required()}
    assert required_by_sdk <= set(document.get("required", []))


def test_list_pages_carry_the_fields_the_page_iterator_reads(openapi: dict[str, Any]) -> None:
    for page in ("RunPage", "RunEventPage"):
        assert {"data", "has_more", "next_cursor"} <= set(
            openapi["components"]["schemas"][page]["properties"]
        )
    assert "resource_version" in openapi["components"]["schemas"]["RunPage"]["properties"]
