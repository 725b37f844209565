"""A run reaches storage only through the API with its run token (issue 12): presigned URLs
for its own checkpoint prefix and the dataset versions pinned for it, nothing else.

S3 is moto's server on 127.0.0.1; the presigned URLs are used over real HTTP, with no
credential."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app_state import app_settings
from core.runs.attempts import AttemptOutcome
from tests.factories import Tenant, app_of, make_tenant
from tests.security.storage_fixtures import storage_api, storage_app
from tests.support.training import (
    Started,
    create_dataset,
    end_attempt,
    start,
    submit,
    upload,
)

__all__ = ["storage_api", "storage_app"]  # fixtures used below

CKPT = "checkpoints/step-0000000001/model.bin"


def presign(client: TestClient, run: Started, *operations: tuple[str, str]) -> httpx.Response:
    body = {"operations": [{"method": m, "key": k} for m, k in operations]}
    return client.post(f"/v1/runs/{run.run_id}/storage/presign", json=body, headers=run.headers)


def url_of(client: TestClient, run: Started, method: str, key: str) -> str:
    response = presign(client, run, (method, key))
    assert response.status_code == 200, response.text
    url: str = response.json()["operations"][0]["url"]
    return url


def listed(client: TestClient, run: Started, prefix: str, **params: str) -> dict[str, Any]:
    response = client.get(
        f"/v1/runs/{run.run_id}/storage/objects",
        params={"prefix": prefix, **params},
        headers=run.headers,
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def run_with_corpus(client: TestClient, tenant: Tenant, files: dict[str, bytes]) -> Started:
    create_dataset(client, tenant, "corpus")
    upload(client, tenant, "corpus", files)
    return start(client, submit(client, tenant, data={"datasets": ["corpus"]}))


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def test_a_run_puts_gets_lists_and_deletes_its_own_checkpoints(storage_api: TestClient) -> None:
    run = start(storage_api, submit(storage_api, make_tenant(storage_api)))
    put = httpx.put(url_of(storage_api, run, "PUT", CKPT), content=b"weights")
    assert put.status_code == 200
    assert httpx.get(url_of(storage_api, run, "GET", CKPT)).content == b"weights"
    assert listed(storage_api, run, "checkpoints/", delimiter="/") == {
        "prefix": "checkpoints/",
        "objects": [],
        "prefixes": ["checkpoints/step-0000000001/"],
    }
    assert listed(storage_api, run, "checkpoints/step-0000000001/")["objects"] == [
        {"key": CKPT, "size": 7}
    ]
    assert httpx.delete(url_of(storage_api, run, "DELETE", CKPT)).status_code == 204
    assert listed(storage_api, run, "checkpoints/")["objects"] == []


def test_the_urls_are_short_lived(storage_api: TestClient) -> None:
    run = start(storage_api, submit(storage_api, make_tenant(storage_api)))
    before = datetime.now(UTC)
    response = presign(storage_api, run, ("PUT", CKPT))
    seconds = app_settings(app_of(storage_api)).run_presigned_url_seconds
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert before + timedelta(seconds=seconds - 5) <= expires <= before + timedelta(seconds + 5)
    query = parse_qs(urlsplit(response.json()["operations"][0]["url"]).query)
    assert query["X-Amz-Expires"] == [str(seconds)]
    assert seconds <= 300


def test_a_run_reads_its_pinned_dataset_and_cannot_change_it(storage_api: TestClient) -> None:
    run = run_with_corpus(storage_api, make_tenant(storage_api), {"a.txt": b"alpha"})
    assert httpx.get(url_of(storage_api, run, "GET", "datasets/corpus/a.txt")).content == b"alpha"
    assert listed(storage_api, run, "datasets/corpus/")["objects"] == [
        {"key": "datasets/corpus/a.txt", "size": 5}
    ]
    for method in ("PUT", "DELETE"):
        refused = presign(storage_api, run, (method, "datasets/corpus/a.txt"))
        assert_refused(refused, 403, "read_only")
    missing = presign(storage_api, run, ("GET", "datasets/corpus/not-in-the-manifest.txt"))
    assert_refused(missing, 404, "not_found")


@pytest.mark.parametrize(
    "key",
    [
        "checkpoints/../../run_other/checkpoints/step-0000000001/COMMIT",
        "checkpoints/a/../../../../x",
        "../checkpoints/x",
        "/orgs/org_other/runs/run_other/checkpoints/x",
        "orgs/org_other/datasets/x",
        "runs/run_other/checkpoints/x",
        "checkpoints//x",
        "checkpoints/./x",
        "checkpoints\\..\\x",
        "datasets/not-pinned/a.txt",
        "datasets/corpus",
        "logs/x",
    ],
)
def test_keys_outside_the_runs_storage_are_refused(storage_api: TestClient, key: str) -> None:
    run = run_with_corpus(storage_api, make_tenant(storage_api), {"a.txt": b"alpha"})
    assert_refused(presign(storage_api, run, ("GET", key)), 403, "outside_run_storage")
    # One bad key refuses the whole request: no URL is handed out for the good ones.
    mixed = presign(storage_api, run, ("PUT", CKPT), ("PUT", key))
    assert_refused(mixed, 403, "outside_run_storage")


@pytest.mark.parametrize(
    "prefix", ["checkpoints/../", "checkpoints/../../", "orgs/", "/", "datasets/nope/", "runs/"]
)
def test_listing_outside_the_runs_storage_is_refused(storage_api: TestClient, prefix: str) -> None:
    run = start(storage_api, submit(storage_api, make_tenant(storage_api)))
    response = storage_api.get(
        f"/v1/runs/{run.run_id}/storage/objects", params={"prefix": prefix}, headers=run.headers
    )
    assert_refused(response, 403, "outside_run_storage")


def test_another_orgs_dataset_of_the_same_name_is_out_of_reach(storage_api: TestClient) -> None:
    run_with_corpus(storage_api, make_tenant(storage_api), {"secret.txt": b"org A's data"})
    run_b = run_with_corpus(storage_api, make_tenant(storage_api), {"b.txt": b"org B's data"})
    refused = presign(storage_api, run_b, ("GET", "datasets/corpus/secret.txt"))
    assert_refused(refused, 404, "not_found")
    assert listed(storage_api, run_b, "datasets/corpus/")["objects"] == [
        {"key": "datasets/corpus/b.txt", "size": 12}
    ]


def test_another_runs_token_is_refused(storage_api: TestClient) -> None:
    tenant = make_tenant(storage_api)
    mine = start(storage_api, submit(storage_api, tenant))
    other = start(storage_api, submit(storage_api, tenant))
    body = {"operations": [{"method": "PUT", "key": CKPT}]}
    path = f"/v1/runs/{mine.run_id}/storage"
    crossed = storage_api.post(f"{path}/presign", json=body, headers=other.headers)
    assert_refused(crossed, 404, "not_found")
    listing = storage_api.get(f"{path}/objects", headers=other.headers)
    assert_refused(listing, 404, "not_found")


def test_an_api_key_cannot_presign_a_runs_storage(storage_api: TestClient) -> None:
    tenant = make_tenant(storage_api)
    run = start(storage_api, submit(storage_api, tenant))
    body = {"operations": [{"method": "PUT", "key": CKPT}]}
    response = storage_api.post(
        f"/v1/runs/{run.run_id}/storage/presign", json=body, headers=tenant.headers
    )
    assert_refused(response, 403, "forbidden")


@pytest.mark.parametrize("outcome", [AttemptOutcome.SYSTEM_FAILED, AttemptOutcome.SUCCEEDED])
def test_a_token_is_refused_once_its_attempt_ended(
    storage_api: TestClient, outcome: AttemptOutcome
) -> None:
    run_id = submit(storage_api, make_tenant(storage_api), scheduling={"max_retries": 1})
    run = start(storage_api, run_id)
    assert presign(storage_api, run, ("PUT", CKPT)).status_code == 200
    end_attempt(storage_api, run_id, outcome)  # retried (queued again) or finished
    assert_refused(presign(storage_api, run, ("PUT", CKPT)), 401, "unauthenticated")
    if outcome is AttemptOutcome.SYSTEM_FAILED:
        second = start(storage_api, run_id)
        assert_refused(presign(storage_api, run, ("PUT", CKPT)), 401, "unauthenticated")
        assert presign(storage_api, second, ("PUT", CKPT)).status_code == 200


def test_on_local_storage_the_run_is_told_to_use_its_paths(
    client: TestClient, tenant: Tenant
) -> None:
    run = start(client, submit(client, tenant))
    assert_refused(presign(client, run, ("PUT", CKPT)), 409, "local_storage")
    assert listed(client, run, "checkpoints/")["objects"] == []


MIB = 2**20


def start_multipart(client: TestClient, run: Started, key: str) -> httpx.Response:
    path = f"/v1/runs/{run.run_id}/storage/multipart"
    return client.post(path, json={"key": key}, headers=run.headers)


def complete_multipart(
    client: TestClient, run: Started, key: str, upload_id: str
) -> httpx.Response:
    path = f"/v1/runs/{run.run_id}/storage/multipart/complete"
    return client.post(path, json={"key": key, "upload_id": upload_id}, headers=run.headers)


def put_part(client: TestClient, run: Started, upload_id: str, number: int, data: bytes) -> None:
    body = {
        "operations": [
            {"method": "PUT_PART", "key": CKPT, "upload_id": upload_id, "part_number": number}
        ]
    }
    answer = client.post(f"/v1/runs/{run.run_id}/storage/presign", json=body, headers=run.headers)
    assert answer.status_code == 200, answer.text
    assert httpx.put(answer.json()["operations"][0]["url"], content=data).status_code == 200


def test_a_large_checkpoint_file_goes_up_in_parts(storage_api: TestClient) -> None:
    run = start(storage_api, submit(storage_api, make_tenant(storage_api)))
    opened = start_multipart(storage_api, run, CKPT)
    assert opened.status_code == 201, opened.text
    upload_id = opened.json()["upload_id"]
    first, second = b"a" * (5 * MIB), b"tail"
    put_part(storage_api, run, upload_id, 2, second)
    early = complete_multipart(storage_api, run, CKPT, upload_id)
    assert_refused(early, 422, "validation_error")  # part 1 is missing, and named
    assert "[1]" in early.json()["detail"]
    put_part(storage_api, run, upload_id, 1, first)
    assert complete_multipart(storage_api, run, CKPT, upload_id).status_code == 204
    assert httpx.get(url_of(storage_api, run, "GET", CKPT)).content == first + second
    again = complete_multipart(storage_api, run, CKPT, upload_id)
    assert_refused(again, 404, "not_found")  # the upload is spent


def test_multipart_stays_inside_the_runs_checkpoints(storage_api: TestClient) -> None:
    run = run_with_corpus(storage_api, make_tenant(storage_api), {"a.txt": b"alpha"})
    assert_refused(start_multipart(storage_api, run, "datasets/corpus/a.txt"), 403, "read_only")
    outside = start_multipart(storage_api, run, "checkpoints/../../run_x/checkpoints/w")
    assert_refused(outside, 403, "outside_run_storage")
    no_id = presign(storage_api, run, ("PUT_PART", CKPT))
    assert_refused(no_id, 422, "validation_error")


def test_multipart_on_local_storage_is_told_to_use_its_paths(
    client: TestClient, tenant: Tenant
) -> None:
    run = start(client, submit(client, tenant))
    assert_refused(start_multipart(client, run, CKPT), 409, "local_storage")
