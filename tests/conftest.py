"""Shared fixtures: a throwaway PostgreSQL database migrated by Alembic, the app, and clients.

Every test session gets its own database (created here, dropped at the end), so parallel runs
never meet. Tests isolate themselves by tenancy: each makes its own organisation.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from core import migrate
from core.settings import Settings
from tests.factories import Tenant, make_tenant
from tests.support.postgres import admin_execute, database_url, drop_database

# Fixtures that tests in several packages ask for, defined in tests/support/ (each is made only
# when a test asks for it). A package's own fixtures stay in its conftest.py.
pytest_plugins = [
    "tests.support.servers",  # start_server: live uvicorn processes
    "tests.support.databases",  # template_db, make_database, fresh_url, factory, fresh_client
    "tests.support.platforms",  # start_platform, shared_platform: real worker trees
    "tests.support.s3",  # s3_endpoint: moto's S3 server
    "tests.support.rate_limits",  # limited: clients of apps with tight rate limits
]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this session, at the latest migration."""
    name = f"trainport_test_{secrets.token_hex(4)}"
    admin_execute(f'CREATE DATABASE "{name}"')
    url = database_url(name)
    migrate.upgrade(url)
    yield url
    drop_database(name)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("embedded") / "trainport.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    return url


def _app(url: str) -> FastAPI:
    return create_app(Settings(database_url=url, key_touch_interval_seconds=0))


@pytest.fixture(scope="session")
def app(postgres_url: str) -> FastAPI:
    return _app(postgres_url)


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session", params=["postgres", "sqlite"])
def any_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The same API on each backend: PostgreSQL and the embedded SQLite mode."""
    url = request.getfixturevalue(f"{request.param}_url")
    with TestClient(_app(url), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def tenant(client: TestClient) -> Tenant:
    """A brand-new organisation with an admin key, on PostgreSQL."""
    return make_tenant(client)


@pytest.fixture
def other_tenant(client: TestClient) -> Tenant:
    return make_tenant(client)


# The fast lane (`make test-fast`): tests that need no PostgreSQL, no Redis and no server of
# their own: pure logic, and the app on SQLite. Derived from what each test asks for, so a new
# test joins or leaves the lane by its fixtures, not by a list kept by hand.
NEEDS_SERVICES = frozenset(
    {
        "postgres_url",
        "template_db",
        "start_platform",
        "shared_platform",
        "api_url",
        "start_server",
        "embedded_server",
    }
)
# Packages whose tests are slow whatever they ask for (browsers, clusters, subprocess-heavy
# suites), as paths under tests/; a package's subpackages are included.
SLOW_PACKAGES = (
    "dashboard",
    "k8s_real",
    "k8s",
    "deploy",
    "contract",
    "security",
    "sdk/runtime",
)
TESTS = Path(__file__).parent


def _is_fast(item: pytest.Item) -> bool:
    if item.get_closest_marker("slow") is not None:
        return False
    if NEEDS_SERVICES & set(getattr(item, "fixturenames", ())):
        return False
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "postgres" in callspec.params.values():
        return False  # `any_client`'s PostgreSQL half
    where = item.path.relative_to(TESTS).parent.as_posix() + "/"
    assert isinstance(item, pytest.Function)  # the suite collects test functions only
    slow = any(where.startswith(f"{package}/") for package in SLOW_PACKAGES)
    return not slow and "ADMIN_URL" not in item.module.__dict__


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _is_fast(item):
            item.add_marker(pytest.mark.fast)
