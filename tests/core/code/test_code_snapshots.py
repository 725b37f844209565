"""`/v1/code/{digest}`: content-addressed code snapshots, on local storage and on S3 (moto)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
from fastapi.testclient import TestClient

from tests.factories import Tenant, make_key, make_tenant


def archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "s3"])
def store_api(request: pytest.FixtureRequest) -> TestClient:
    client: TestClient = request.getfixturevalue("api" if request.param == "local" else "s3_api")
    return client


def test_an_upload_is_verified_and_stored_once(store_api: TestClient) -> None:
    tenant = make_tenant(store_api)
    data = archive({"train.py": b"print('hi')\n"})
    digest = digest_of(data)
    assert store_api.head(f"/v1/code/{digest}", headers=tenant.headers).status_code == 404
    first = store_api.put(f"/v1/code/{digest}", content=data, headers=tenant.headers)
    assert first.status_code == 201, first.text
    assert first.json()["digest"] == digest
    assert first.json()["size_bytes"] == len(data)
    head = store_api.head(f"/v1/code/{digest}", headers=tenant.headers)
    assert head.status_code == 200
    assert head.headers["x-snapshot-size"] == str(len(data))
    again = store_api.put(f"/v1/code/{digest}", content=data, headers=tenant.headers)
    assert again.status_code == 200


def test_a_client_cannot_claim_a_digest_for_other_bytes(store_api: TestClient) -> None:
    tenant = make_tenant(store_api)
    claimed = digest_of(archive({"a.py": b"honest"}))
    response = store_api.put(
        f"/v1/code/{claimed}", content=archive({"a.py": b"evil"}), headers=tenant.headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "digest_mismatch"
    assert store_api.head(f"/v1/code/{claimed}", headers=tenant.headers).status_code == 404


def test_snapshots_belong_to_their_org(api: TestClient) -> None:
    owner, other = make_tenant(api), make_tenant(api)
    data = archive({"x.py": b"1"})
    digest = digest_of(data)
    assert api.put(f"/v1/code/{digest}", content=data, headers=owner.headers).status_code == 201
    assert api.head(f"/v1/code/{digest}", headers=other.headers).status_code == 404
    missing = api.get(f"/v1/code/{digest}", headers=other.headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_a_viewer_cannot_upload(api: TestClient) -> None:
    viewer = make_key(api, make_tenant(api), "viewer")
    data = archive({"x.py": b"2"})
    response = api.put(f"/v1/code/{digest_of(data)}", content=data, headers=viewer.headers)
    assert response.status_code == 403


def test_a_malformed_digest_is_refused(api: TestClient, org: Tenant) -> None:
    response = api.put("/v1/code/sha256:" + "Z" * 64, content=b"x", headers=org.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
