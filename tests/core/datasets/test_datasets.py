"""Datasets: content digests, immutable versions, manifests and downloads, source registration,
and pinning at admission."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from api.app import create_app
from tests.factories import Tenant, make_tenant
from tests.support.training import (
    _settings,
    admit,
    create_dataset,
    make_bucket,
    s3_settings,
    start,
    submit,
    upload,
)

FILES = {"train/a.txt": b"alpha " * 100, "train/b.txt": b"beta", "README": b"read me"}


def _expected_digest(files: dict[str, bytes]) -> str:
    lines = "".join(
        f"{path} {hashlib.sha256(data).hexdigest()}\n" for path, data in sorted(files.items())
    )
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def test_a_version_is_named_by_its_content_digest(api: TestClient, org: Tenant) -> None:
    create_dataset(api, org, "corpus")
    status, version = upload(api, org, "corpus", FILES)
    assert status == 201
    assert version["version"] == 1
    assert version["digest"] == _expected_digest(FILES)
    assert (version["file_count"], version["size_bytes"]) == (3, 600 + 4 + 7)


def test_uploading_the_same_content_again_answers_the_same_version(
    api: TestClient, org: Tenant
) -> None:
    create_dataset(api, org, "corpus")
    _, first = upload(api, org, "corpus", FILES)
    status, again = upload(api, org, "corpus", dict(reversed(list(FILES.items()))))
    assert status == 200
    assert again == first
    listed = api.get("/v1/datasets/corpus", headers=org.headers).json()
    assert [v["version"] for v in listed["versions"]] == [1]


def test_changed_content_is_a_new_version_with_another_digest(api: TestClient, org: Tenant) -> None:
    create_dataset(api, org, "corpus")
    _, first = upload(api, org, "corpus", FILES)
    status, second = upload(api, org, "corpus", {**FILES, "train/b.txt": b"Beta"})
    renamed = {"train/c.txt" if p == "train/b.txt" else p: d for p, d in FILES.items()}
    _, third = upload(api, org, "corpus", renamed)
    assert status == 201
    assert [first["version"], second["version"], third["version"]] == [1, 2, 3]
    assert len({first["digest"], second["digest"], third["digest"]}) == 3


def test_the_manifest_lists_every_file_and_serves_it(api: TestClient, org: Tenant) -> None:
    create_dataset(api, org, "corpus")
    _, version = upload(api, org, "corpus", FILES)
    for ref in ("1", version["digest"]):
        manifest = api.get(f"/v1/datasets/corpus/versions/{ref}/manifest", headers=org.headers)
        assert manifest.status_code == 200, manifest.text
        assert manifest.json()["digest"] == version["digest"]
    files = manifest.json()["files"]
    assert [f["path"] for f in files] == sorted(FILES)
    for entry in files:
        body = api.get(entry["url"], headers=org.headers).content
        assert body == FILES[entry["path"]]
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]


def test_bad_paths_and_duplicate_names_are_refused(api: TestClient, org: Tenant) -> None:
    create_dataset(api, org, "corpus")
    for bad in ["../escape.txt", "/abs.txt", "a//b.txt"]:
        parts = [("files", (bad, b"x", "text/plain"))]
        response = api.post("/v1/datasets/corpus/versions", files=parts, headers=org.headers)
        assert response.status_code == 422, (bad, response.text)
    again = api.post("/v1/datasets", json={"name": "corpus"}, headers=org.headers)
    assert again.status_code == 409


def test_an_s3_prefix_is_registered_by_reading_and_hashing_it(
    s3_api: TestClient, s3_endpoint: str, postgres_url: str, tmp_path: Path
) -> None:
    client = make_bucket(s3_endpoint, "customer-data")
    for path, data in FILES.items():
        client.put_object(Bucket="customer-data", Key=f"text/v1/{path}", Body=data)
    tenant = make_tenant(s3_api)
    # An operator allowed this org the prefix (tests/core/datasets/test_dataset_sources.py).
    allowed = {"dataset_sources": {tenant.org_id: ["s3://customer-data/text/"]}}
    store = s3_settings(s3_endpoint, "trainport-objects", s3_prefix="platform/", **allowed)
    with TestClient(create_app(_settings(postgres_url, tmp_path, **store))) as s3_api:
        _register_and_read(s3_api, tenant)


def _register_and_read(s3_api: TestClient, tenant: Tenant) -> None:
    create_dataset(s3_api, tenant, "external")
    body = {"source": "s3://customer-data/text/v1/"}
    response = s3_api.post("/v1/datasets/external/versions", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    assert response.json()["digest"] == _expected_digest(FILES)
    assert response.json()["uri"] == "s3://customer-data/text/v1/"
    manifest = s3_api.get(
        "/v1/datasets/external/versions/1/manifest", headers=tenant.headers
    ).json()
    first = manifest["files"][0]
    assert httpx.get(first["url"]).content == FILES[first["path"]]  # presigned


def test_an_upload_to_s3_storage_matches_the_local_digest(s3_api: TestClient) -> None:
    tenant = make_tenant(s3_api)
    create_dataset(s3_api, tenant, "corpus")
    _, version = upload(s3_api, tenant, "corpus", FILES)
    assert version["digest"] == _expected_digest(FILES)
    assert version["uri"].startswith(f"s3://trainport-objects/platform/orgs/{tenant.org_id}/")


def test_admission_pins_versions_and_newer_ones_change_nothing(
    api: TestClient, org: Tenant
) -> None:
    create_dataset(api, org, "corpus")
    _, first = upload(api, org, "corpus", FILES)
    latest = submit(api, org, data={"datasets": ["corpus"]})
    by_digest = submit(api, org, data={"datasets": [first["digest"]]})
    admit(api, latest)
    admit(api, by_digest)
    _, second = upload(api, org, "corpus", {"new.txt": b"newer"})
    for run_id in (latest, by_digest):
        started = start(api, run_id)
        assert started.datasets["corpus"]["digest"] == first["digest"]
        assert started.datasets["corpus"]["uri"] == first["uri"]
    newest = submit(api, org, data={"datasets": ["corpus@2"]})
    assert start(api, newest).datasets["corpus"]["digest"] == second["digest"]


def test_an_unknown_dataset_fails_the_run_with_a_clear_message(
    api: TestClient, org: Tenant
) -> None:
    create_dataset(api, org, "corpus")
    upload(api, org, "corpus", FILES)
    for ref, why in [
        ("missing@1", "dataset 'missing' does not exist"),
        ("corpus@9", "dataset 'corpus' has no version 9"),
        ("sha256:" + "0" * 64, "no dataset version has digest"),
    ]:
        run_id = submit(api, org, data={"datasets": [ref]})
        admit(api, run_id)
        run = api.get(f"/v1/runs/{run_id}", headers=org.headers).json()
        assert (run["status"], run["status_reason"]) == ("failed", "dataset_unavailable")
        assert why in run["status_message"]


def test_another_orgs_dataset_is_neither_listed_nor_usable(api: TestClient, org: Tenant) -> None:
    create_dataset(api, org, "private")
    upload(api, org, "private", FILES)
    intruder = make_tenant(api)
    assert api.get("/v1/datasets", headers=intruder.headers).json()["data"] == []
    assert api.get("/v1/datasets/private", headers=intruder.headers).status_code == 404
    run_id = submit(api, intruder, data={"datasets": ["private"]})
    admit(api, run_id)
    run = api.get(f"/v1/runs/{run_id}", headers=intruder.headers).json()
    assert run["status"] == "failed"
