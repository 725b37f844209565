"""External dataset sources: only the prefixes an operator allowed for the caller's org, never the
platform's own store (any org's `orgs/<id>/`), and only in canonical form (issue 12, finding 1).

Runs against moto's real S3 endpoint, with the platform's objects in `trainport-objects`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.app_state import app_settings
from tests.factories import Tenant, app_of, make_tenant
from tests.support.training import _settings, create_dataset, make_bucket, s3_settings, upload

PRIVATE = {"secret.txt": b"org A's private data"}
MakeApi = Callable[..., TestClient]


@pytest.fixture
def s3_api_with(postgres_url: str, s3_endpoint: str, tmp_path: Path) -> Iterator[MakeApi]:
    """An S3-backed API (platform store `s3://trainport-objects/platform/`) with extra settings."""
    clients: list[TestClient] = []
    make_bucket(s3_endpoint, "trainport-objects")
    customer = make_bucket(s3_endpoint, "customer-sources")
    customer.put_object(Bucket="customer-sources", Key="text/v1/a.txt", Body=b"alpha")
    customer.put_object(Bucket="customer-sources", Key="secret/v1/b.txt", Body=b"not yours")

    def make(**extra: Any) -> TestClient:
        store = s3_settings(s3_endpoint, "trainport-objects", s3_prefix="platform/")
        app = create_app(_settings(postgres_url, tmp_path / str(len(clients)), **store, **extra))
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _register(api: TestClient, tenant: Tenant, source: str) -> Any:
    return api.post(
        "/v1/datasets/external/versions", json={"source": source}, headers=tenant.headers
    )


def _victim_and_attacker(api: TestClient) -> tuple[Tenant, Tenant]:
    victim, attacker = make_tenant(api), make_tenant(api)
    create_dataset(api, victim, "private")
    upload(api, victim, "private", PRIVATE)
    create_dataset(api, attacker, "external")
    return victim, attacker


def test_another_orgs_objects_in_the_platform_bucket_are_never_a_source(
    s3_api_with: MakeApi,
) -> None:
    api = s3_api_with()
    victim, attacker = _victim_and_attacker(api)
    for source in [
        "s3://trainport-objects/",
        "s3://trainport-objects/platform/",
        f"s3://trainport-objects/platform/orgs/{victim.org_id}/",
    ]:
        response = _register(api, attacker, source)
        assert response.status_code == 403, (source, response.text)
        assert response.json()["code"] == "source_not_allowed"
    versions = api.get("/v1/datasets/external", headers=attacker.headers).json()["versions"]
    assert versions == []


def test_every_external_source_is_refused_until_an_operator_allows_it(
    s3_api_with: MakeApi,
) -> None:
    api = s3_api_with()
    tenant = make_tenant(api)
    create_dataset(api, tenant, "external")
    response = _register(api, tenant, "s3://customer-sources/text/v1/")
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "TRAINPORT_DATASET_SOURCES" in response.json()["detail"]


def test_an_allowed_prefix_is_registered_and_nothing_outside_it(s3_api_with: MakeApi) -> None:
    probe = s3_api_with()
    tenant = make_tenant(probe)
    api = s3_api_with(dataset_sources={tenant.org_id: ["s3://customer-sources/text/"]})
    create_dataset(api, tenant, "external")
    assert _register(api, tenant, "s3://customer-sources/text/v1/").status_code == 201
    for outside in [
        "s3://customer-sources/secret/v1/",
        "s3://customer-sources/",
        "s3://other/text/",
    ]:
        response = _register(api, tenant, outside)
        assert response.status_code == 403, (outside, response.text)


def test_an_allow_list_entry_names_an_org_by_name_too(s3_api_with: MakeApi) -> None:
    probe = s3_api_with()
    name = "sources-by-name-" + app_settings(app_of(probe)).state_dir.name
    tenant = make_tenant(probe, name=name)
    api = s3_api_with(dataset_sources={name: ["s3://customer-sources/text/"]})
    create_dataset(api, tenant, "external")
    assert _register(api, tenant, "s3://customer-sources/text/v1/").status_code == 201


def test_tricks_on_the_uri_do_not_escape_the_allowed_prefix(s3_api_with: MakeApi) -> None:
    probe = s3_api_with()
    tenant = make_tenant(probe)
    api = s3_api_with(dataset_sources={tenant.org_id: ["s3://customer-sources/text/"]})
    create_dataset(api, tenant, "external")
    for trick in [
        "s3://customer-sources/text/../secret/v1/",
        "s3://customer-sources/text/./../secret/",
        "s3://customer-sources//secret/v1/",
        "s3://customer-sources/text//../secret/",
        "s3://Customer-Sources/text/v1/",
        "s3://customer-sources@evil/text/v1/",
        "s3://customer-sources:443/text/v1/",
        "S3://customer-sources/text/v1/",
    ]:
        response = _register(api, tenant, trick)
        assert response.status_code in {403, 422}, (trick, response.text)
    versions = api.get("/v1/datasets/external", headers=tenant.headers).json()["versions"]
    assert versions == []


def test_the_platform_store_is_refused_even_when_allowed_by_mistake(
    s3_api_with: MakeApi,
) -> None:
    probe = s3_api_with()
    victim, attacker = _victim_and_attacker(probe)
    allowed = {attacker.org_id: ["s3://trainport-objects/"]}
    api = s3_api_with(dataset_sources=allowed)
    for source in [
        "s3://trainport-objects/",
        f"s3://trainport-objects/platform/orgs/{victim.org_id}/",
    ]:
        response = _register(api, attacker, source)
        assert response.status_code == 403, (source, response.text)
        assert "platform" in response.json()["detail"]


def test_a_source_no_longer_allowed_is_no_longer_served(s3_api_with: MakeApi) -> None:
    probe = s3_api_with()
    tenant = make_tenant(probe)
    allowing = s3_api_with(dataset_sources={tenant.org_id: ["s3://customer-sources/text/"]})
    create_dataset(allowing, tenant, "external")
    assert _register(allowing, tenant, "s3://customer-sources/text/v1/").status_code == 201
    manifest = "/v1/datasets/external/versions/1/manifest"
    assert allowing.get(manifest, headers=tenant.headers).status_code == 200
    for path in [manifest, "/v1/datasets/external/versions/1/files/a.txt"]:
        response = probe.get(path, headers=tenant.headers)  # the operator took it back
        assert response.status_code == 403, (path, response.text)
        assert response.json()["code"] == "source_not_allowed"
