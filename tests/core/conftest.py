"""Fixtures for the core rooms' tests through the API: apps with their own object stores.

The training side of the platform (runs, datasets, checkpoints, metrics, code, provenance,
storage) is tested through its routes on apps whose objects are on the local filesystem (`api`,
`org`) or in S3 (`s3_api`: moto's server mode on 127.0.0.1, `s3_endpoint` of
tests/support/s3.py); nothing is patched. Runs are moved to `starting` the way the scheduler and
the launch task do it, which also builds their launch environment (tests/support/training.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from tests.factories import Tenant, make_tenant
from tests.support.training import _settings, make_bucket, s3_settings


@pytest.fixture(scope="session")
def local_app(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The embedded default: objects on the local filesystem."""
    return create_app(_settings(postgres_url, tmp_path_factory.mktemp("local")))


@pytest.fixture(scope="session")
def s3_app(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> FastAPI:
    """Objects in an S3 bucket behind a real endpoint."""
    make_bucket(s3_endpoint, "trainport-objects")
    extra = s3_settings(s3_endpoint, "trainport-objects", s3_prefix="platform/")
    return create_app(_settings(postgres_url, tmp_path_factory.mktemp("s3"), **extra))


@pytest.fixture(scope="session")
def s3_small_parts_api(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> Iterator[TestClient]:
    """S3 storage where files above 5 MiB (S3's smallest part) go up in 5 MiB parts."""
    make_bucket(s3_endpoint, "trainport-parts")
    small = {"s3_multipart_threshold_bytes": 5 * 2**20, "s3_multipart_chunk_bytes": 5 * 2**20}
    extra = s3_settings(s3_endpoint, "trainport-parts", **small)
    app = create_app(_settings(postgres_url, tmp_path_factory.mktemp("parts"), **extra))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def api(local_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(local_app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def threadpool_api(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """A second API process on the same database, with the event-loop queries turned off."""
    settings = _settings(postgres_url, tmp_path_factory.mktemp("threadpool"), async_reads=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="session")
def s3_api(s3_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(s3_app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def org(api: TestClient) -> Tenant:
    return make_tenant(api)
