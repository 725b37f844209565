"""Run tokens: accepted on the run's own routes only, never for another run, dead once finished."""

from __future__ import annotations

from fastapi.testclient import TestClient

from core.runs import run_tokens
from core.runs.attempts import AttemptOutcome
from tests.factories import Tenant
from tests.support.checkpointing import commit_files
from tests.support.training import (
    SECRET,
    create_dataset,
    end_attempt,
    start,
    submit,
    upload,
)


def test_the_token_works_on_the_runs_own_routes(api: TestClient, org: Tenant) -> None:
    run = start(api, submit(api, org))
    base = f"/v1/runs/{run.run_id}"
    assert run.token.startswith("tpr_")
    assert api.get(base, headers=run.headers).json()["id"] == run.run_id
    points = {"points": [{"step": 1, "values": {"loss": 1.0}}]}
    assert api.post(f"{base}/metrics", json=points, headers=run.headers).status_code == 202
    assert api.post(f"{base}/heartbeat", json={"step": 1}, headers=run.headers).status_code == 204
    body = commit_files(run.env["TRAINPORT_CHECKPOINT_URI"], 1, {"w": b"w"})
    assert api.post(f"{base}/checkpoints", json=body, headers=run.headers).status_code == 201
    assert api.get(f"{base}/checkpoints", headers=run.headers).status_code == 200


def test_the_token_is_refused_everywhere_else(api: TestClient, org: Tenant) -> None:
    run = start(api, submit(api, org))
    base = f"/v1/runs/{run.run_id}"
    for method, path in [
        ("GET", "/v1/runs"),
        ("POST", f"{base}/cancel"),
        ("DELETE", base),
        ("GET", f"{base}/metrics"),
        ("GET", f"{base}/events"),
        ("GET", f"{base}/provenance"),
        ("GET", "/v1/datasets"),
        ("POST", "/v1/datasets"),
        ("GET", "/v1/api-keys"),
        ("GET", "/v1/me"),
    ]:
        response = api.request(method, path, headers=run.headers, json={"name": "x"})
        assert response.status_code == 401, (method, path, response.text)


def test_another_runs_token_is_rejected(api: TestClient, org: Tenant) -> None:
    mine, other = start(api, submit(api, org)), start(api, submit(api, org))
    base = f"/v1/runs/{mine.run_id}"
    points = {"points": [{"step": 1, "values": {"loss": 1.0}}]}
    assert api.get(base, headers=other.headers).status_code == 404
    assert api.post(f"{base}/metrics", json=points, headers=other.headers).status_code == 404
    assert api.post(f"{base}/heartbeat", json={}, headers=other.headers).status_code == 404
    assert api.get(f"{base}/checkpoints", headers=other.headers).status_code == 404
    presign = {"operations": [{"method": "PUT", "key": "checkpoints/step-0000000001/w"}]}
    crossed = api.post(f"{base}/storage/presign", json=presign, headers=other.headers)
    assert crossed.status_code == 404
    assert api.get(f"{base}/storage/objects", headers=other.headers).status_code == 404


def test_forged_tokens_and_finished_runs_get_401(api: TestClient, org: Tenant) -> None:
    run = start(api, submit(api, org))
    base = f"/v1/runs/{run.run_id}"
    forged = run_tokens.issue("not-the-server-secret", run.run_id, run.attempt)
    older = run_tokens.issue(SECRET, run.run_id, run.attempt + 1)
    for token in (forged, older, run.token[:-2] + "xx", "tpr_garbage"):
        response = api.get(base, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
    assert end_attempt(api, run.run_id, AttemptOutcome.SUCCEEDED) == "succeeded"
    assert api.get(base, headers=run.headers).status_code == 401


def test_an_old_attempts_token_stops_working_on_retry(api: TestClient, org: Tenant) -> None:
    run_id = submit(api, org, scheduling={"max_retries": 1})
    first = start(api, run_id)
    end_attempt(api, run_id, AttemptOutcome.SYSTEM_FAILED)
    second = start(api, run_id)
    assert api.get(f"/v1/runs/{run_id}", headers=first.headers).status_code == 401
    assert api.get(f"/v1/runs/{run_id}", headers=second.headers).status_code == 200


def test_the_token_reads_only_the_datasets_its_run_pinned(api: TestClient, org: Tenant) -> None:
    create_dataset(api, org, "pinned")
    create_dataset(api, org, "other")
    upload(api, org, "pinned", {"a.txt": b"a"})
    upload(api, org, "pinned", {"b.txt": b"b"})
    upload(api, org, "other", {"c.txt": b"c"})
    run = start(api, submit(api, org, data={"datasets": ["pinned@1"]}))
    manifest = api.get("/v1/datasets/pinned/versions/1/manifest", headers=run.headers)
    assert manifest.status_code == 200
    file_url = manifest.json()["files"][0]["url"]
    assert api.get(file_url, headers=run.headers).content == b"a"
    assert api.get("/v1/datasets/pinned", headers=run.headers).status_code == 200
    for path in [
        "/v1/datasets/pinned/versions/2/manifest",
        "/v1/datasets/other",
        "/v1/datasets/other/versions/1/manifest",
    ]:
        assert api.get(path, headers=run.headers).status_code == 404, path
    response = api.post(
        "/v1/datasets/pinned/versions", json={"source": "s3://x/y/"}, headers=run.headers
    )
    assert response.status_code == 401
