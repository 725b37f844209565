"""Presigned dataset uploads: files PUT straight to S3 (moto over HTTP), then checked and hashed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

import trainport
from tests.factories import Tenant, make_tenant
from tests.support.training import create_dataset, upload

FILES = {"train/a.txt": b"alpha\n" * 100, "train/b.txt": b"beta\n" * 50, "README": b"readme"}


def _declare(client: TestClient, tenant: Tenant, name: str, **files: Any) -> httpx.Response:
    declared = [{"path": path, "size": len(data)} for path, data in FILES.items()]
    body = {"files": files.get("declared", declared)}
    return client.post(f"/v1/datasets/{name}/uploads", json=body, headers=tenant.headers)


def _put_all(targets: list[dict[str, str]], files: dict[str, bytes]) -> None:
    for target in targets:
        if target["path"] in files:
            response = httpx.put(target["url"], content=files[target["path"]], timeout=30)
            assert response.status_code == 200, response.text


def _complete(client: TestClient, tenant: Tenant, name: str, upload_id: str) -> httpx.Response:
    url = f"/v1/datasets/{name}/uploads/{upload_id}/complete"
    return client.post(url, headers=tenant.headers)


def test_files_put_to_presigned_urls_become_the_version_a_streamed_upload_would(
    s3_api: TestClient,
) -> None:
    tenant = make_tenant(s3_api)
    create_dataset(s3_api, tenant, "direct")
    started = _declare(s3_api, tenant, "direct")
    assert started.status_code == 201, started.text
    plan = started.json()
    assert plan["id"].startswith("upl_")
    assert sorted(t["path"] for t in plan["files"]) == sorted(FILES)
    assert all(t["method"] == "PUT" and "Signature" in t["url"] for t in plan["files"])
    _put_all(plan["files"], FILES)
    done = _complete(s3_api, tenant, "direct", plan["id"])
    assert done.status_code == 201, done.text
    version = done.json()
    assert (version["version"], version["file_count"]) == (1, 3)
    create_dataset(s3_api, tenant, "streamed")
    _, streamed = upload(s3_api, tenant, "streamed", FILES)
    assert version["digest"] == streamed["digest"]
    assert _complete(s3_api, tenant, "direct", plan["id"]).status_code == 404  # used up


def test_a_missing_or_resized_file_is_refused_naming_it_and_nothing_is_recorded(
    s3_api: TestClient,
) -> None:
    tenant = make_tenant(s3_api)
    create_dataset(s3_api, tenant, "partial")
    plan = _declare(s3_api, tenant, "partial").json()
    _put_all(plan["files"], {k: v for k, v in FILES.items() if k != "README"})
    missing = _complete(s3_api, tenant, "partial", plan["id"])
    assert missing.status_code == 422
    assert missing.headers["content-type"] == "application/problem+json"
    assert "README has not been uploaded" in missing.json()["detail"]
    _put_all(plan["files"], {"README": b"a different length"})
    resized = _complete(s3_api, tenant, "partial", plan["id"])
    assert resized.status_code == 422
    assert "README has 18 bytes, not the 6 declared" in resized.json()["detail"]
    _put_all(plan["files"], {"README": FILES["README"]})
    assert _complete(s3_api, tenant, "partial", plan["id"]).status_code == 201
    versions = s3_api.get("/v1/datasets/partial", headers=tenant.headers).json()["versions"]
    assert len(versions) == 1


def test_a_declared_digest_must_match_what_arrived(s3_api: TestClient) -> None:
    tenant = make_tenant(s3_api)
    create_dataset(s3_api, tenant, "digests")
    declared = [{"path": "x.bin", "size": 3, "sha256": "0" * 64}]
    plan = _declare(s3_api, tenant, "digests", declared=declared).json()
    _put_all(plan["files"], {"x.bin": b"xyz"})
    refused = _complete(s3_api, tenant, "digests", plan["id"])
    assert refused.status_code == 422
    assert "x.bin does not match the sha256 declared" in refused.json()["detail"]


BIG = bytes(range(256)) * (5 * 2**12) + b"tail" * 250  # 5 MiB + 1000 bytes: two parts


def _put_part(target: dict[str, Any], number: int, data: bytes, extra: bytes = b"") -> None:
    part = target["parts"][number - 1]
    assert part["part_number"] == number
    content = data[part["offset"] : part["offset"] + part["size"]] + extra
    response = httpx.put(part["url"], content=content, timeout=30)
    assert response.status_code == 200, response.text


def test_a_file_above_the_threshold_goes_up_in_parts_and_is_joined_on_completion(
    s3_small_parts_api: TestClient,
) -> None:
    api, tenant = s3_small_parts_api, make_tenant(s3_small_parts_api)
    create_dataset(api, tenant, "parts")
    files = {"big.bin": BIG, "small.txt": b"small"}
    declared = [{"path": p, "size": len(d)} for p, d in files.items()]
    plan = _declare(api, tenant, "parts", declared=declared).json()
    big, small = sorted(plan["files"], key=lambda t: t["path"])
    assert (big["url"], small["parts"]) == (None, None)
    assert [(p["offset"], p["size"]) for p in big["parts"]] == [(0, 5 * 2**20), (5 * 2**20, 1000)]
    _put_all([small], files)
    _put_part(big, 1, BIG)
    missing = _complete(api, tenant, "parts", plan["id"])
    assert missing.status_code == 422
    assert "Part 2 of 2 of big.bin has not been uploaded" in missing.json()["detail"]
    _put_part(big, 2, BIG, extra=b"!")  # one byte too many
    resized = _complete(api, tenant, "parts", plan["id"])
    assert "Part 2 of big.bin has 1001 bytes, not the 1000 planned" in resized.json()["detail"]
    _put_part(big, 2, BIG)  # the same part again replaces it
    done = _complete(api, tenant, "parts", plan["id"])
    assert done.status_code == 201, done.text
    create_dataset(api, tenant, "parts-streamed")
    _, streamed = upload(api, tenant, "parts-streamed", files)
    assert done.json()["digest"] == streamed["digest"]


def test_another_orgs_upload_is_not_found(s3_api: TestClient) -> None:
    owner, intruder = make_tenant(s3_api), make_tenant(s3_api)
    for tenant in (owner, intruder):
        create_dataset(s3_api, tenant, "shared-name")
    plan = _declare(s3_api, owner, "shared-name").json()
    _put_all(plan["files"], FILES)
    assert _complete(s3_api, intruder, "shared-name", plan["id"]).status_code == 404
    assert _complete(s3_api, owner, "shared-name", "upl_nope").status_code == 404


def test_bad_declarations_get_clear_errors(s3_api: TestClient) -> None:
    tenant = make_tenant(s3_api)
    create_dataset(s3_api, tenant, "bad")
    cases = [
        [{"path": "../escape", "size": 1}],
        [{"path": "a", "size": 1}, {"path": "a", "size": 2}],
        [{"path": "huge", "size": 6 * 2**40}],  # past S3's 5 TiB per object
        [],
    ]
    for declared in cases:
        response = _declare(s3_api, tenant, "bad", declared=declared)
        assert response.status_code == 422, (declared, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    # Past the operator's budget: what an upload that large would meet (a sum no schema states).
    past_budget = [{"path": "a", "size": 6 * 2**30}, {"path": "b", "size": 6 * 2**30}]
    response = _declare(s3_api, tenant, "bad", declared=past_budget)
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")


def test_with_local_storage_presigned_uploads_answer_how_to_upload_instead(
    api: TestClient,
) -> None:
    tenant = make_tenant(api)
    create_dataset(api, tenant, "local")
    refused = _declare(api, tenant, "local")
    assert refused.status_code == 409
    assert refused.json()["code"] == "presigned_uploads_unavailable"
    assert "multipart/form-data" in refused.json()["detail"]


def test_the_sdk_pushes_a_folder_through_presigned_urls(s3_api: TestClient, tmp_path: Path) -> None:
    tenant = make_tenant(s3_api)
    create_dataset(s3_api, tenant, "sdk-direct")
    for path, data in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    sdk = trainport.Client(base_url="http://testserver", api_key=tenant.key, http_client=s3_api)
    version = sdk.datasets.push_direct("sdk-direct", tmp_path)
    create_dataset(s3_api, tenant, "sdk-streamed")
    assert version.digest == sdk.datasets.push("sdk-streamed", tmp_path).digest


def test_the_sdk_sends_big_files_in_parts_with_progress_sync_and_async(
    s3_small_parts_api: TestClient, tmp_path: Path
) -> None:
    api, tenant = s3_small_parts_api, make_tenant(s3_small_parts_api)
    (tmp_path / "big.bin").write_bytes(BIG)
    (tmp_path / "empty").write_bytes(b"")
    sent: list[int] = []
    sdk = trainport.Client(base_url="http://testserver", api_key=tenant.key, http_client=api)
    version = sdk.datasets.push_direct("sdk-parts", tmp_path, progress=sent.append)
    assert (version.file_count, sum(sent)) == (2, len(BIG))

    async def again() -> trainport.DatasetVersion:
        transport = httpx.ASGITransport(app=api.app)
        async with trainport.AsyncClient(
            base_url="http://testserver",
            api_key=tenant.key,
            http_client=httpx.AsyncClient(transport=transport, base_url="http://testserver"),
        ) as client:
            return await client.datasets.push_direct("sdk-parts-async", tmp_path)

    assert asyncio.run(again()).digest == version.digest
