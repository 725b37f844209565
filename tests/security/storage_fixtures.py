"""Fixtures for the storage-boundary tests: an API on S3 storage (moto's server on 127.0.0.1)
whose platform credentials are distinctive strings, so a test can look for them anywhere.

Import the fixtures you use into the test module (`from tests.security.storage_fixtures import
...`); they reuse the training API's helpers (submit, start, end_attempt, upload).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.app_state import app_settings
from core.settings import Settings
from tests.support.servers import StartServer
from tests.support.training import make_bucket

__all__ = [
    "PLATFORM_CREDENTIALS",
    "live_storage_api",
    "platform_settings",
    "storage_api",
    "storage_app",
]

# Values no run may ever see; moto accepts any access key.
PLATFORM_CREDENTIALS = {
    "secret_key": "platform-signing-key-that-no-run-may-see",
    "s3_access_key_id": "AKIAPLATFORMROOTKEYID",
    "s3_secret_access_key": "platform-root-s3-secret-that-no-run-may-see",
}
BUCKET = "storage-boundary"


def platform_settings(postgres_url: str, root: Path, endpoint: str) -> Settings:
    return Settings(
        database_url=postgres_url,
        broker_url="redis://:broker-password-no-run-may-see@127.0.0.1:6379/9",
        key_touch_interval_seconds=0,
        state_dir=root / "state",
        storage_dir=root / "storage",
        storage_backend="s3",
        s3_bucket=BUCKET,
        s3_prefix="platform/",
        s3_endpoint_url=endpoint,
        s3_region="us-east-1",
        secret_key=PLATFORM_CREDENTIALS["secret_key"],
        s3_access_key_id=PLATFORM_CREDENTIALS["s3_access_key_id"],
        s3_secret_access_key=PLATFORM_CREDENTIALS["s3_secret_access_key"],
    )


@pytest.fixture(scope="session")
def storage_app(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str
) -> FastAPI:
    make_bucket(s3_endpoint, BUCKET)
    root = tmp_path_factory.mktemp("storage-boundary")
    return create_app(platform_settings(postgres_url, root, s3_endpoint))


@pytest.fixture(scope="session")
def storage_api(storage_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(storage_app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="session")
def live_storage_api(storage_app: FastAPI, start_server: StartServer) -> str:
    """The same platform (database, secret key, bucket) served by uvicorn over real HTTP, for
    runtime processes to call; its base URL."""
    settings: Settings = app_settings(storage_app)
    values = {
        "broker_url": settings.broker_url,
        "state_dir": str(settings.state_dir),
        "storage_backend": "s3",
        "s3_bucket": settings.s3_bucket,
        "s3_prefix": settings.s3_prefix,
        "s3_endpoint_url": settings.s3_endpoint_url or "",
        "s3_region": settings.s3_region or "",
        **PLATFORM_CREDENTIALS,
    }
    return start_server(settings.database_url, **values).url
