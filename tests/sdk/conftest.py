"""The SDK's fixtures: the real API served by uvicorn on this session's Postgres database.

The server runs as a subprocess on a free 127.0.0.1 port (`start_server`,
tests/support/servers.py), exactly as users run it, so the SDK and CLI are tested over real
HTTP. Each test makes its own tenant (organisation + admin key). The CLI's environment for that
tenant (`cli_env`) and a run file (`run_file`) are here too, for every CLI test of the package;
the command itself is tests/support/cli.py's `trainport_cli`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import trainport
from core.log_archive import LogArchive
from tests.factories import Tenant, log_archive, make_tenant
from tests.support.cli import RUN_YAML
from tests.support.servers import StartServer


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder for files the tests download and upload."""
    return tmp_path_factory.mktemp("run-files")


@pytest.fixture(scope="session")
def archive(postgres_url: str) -> LogArchive:
    """The run logs the live server reads (tests store them as an executor's writer does)."""
    return log_archive(postgres_url)


@pytest.fixture(scope="session")
def api_url(postgres_url: str, log_dir: Path, start_server: StartServer) -> str:
    """The base URL of a live API process on this session's database."""
    return start_server(postgres_url).url


@pytest.fixture
def sdk_tenant(client: TestClient) -> Tenant:
    """A new organisation with an admin key (made on the same database the server uses)."""
    return make_tenant(client)


@pytest.fixture
def sdk(api_url: str, sdk_tenant: Tenant) -> Iterator[trainport.Client]:
    """A client for a brand-new organisation, talking to the live server."""
    with trainport.Client(base_url=api_url, api_key=sdk_tenant.key) as client:
        yield client


@pytest.fixture(autouse=True)
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point config lookup at an empty temp file and clear the TRAINPORT_* client variables."""
    config = tmp_path / "config.toml"
    monkeypatch.setenv("TRAINPORT_CONFIG", str(config))
    for name in ("TRAINPORT_API_URL", "TRAINPORT_API_KEY", "TRAINPORT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return config


@pytest.fixture
def cli_env(api_url: str, sdk_tenant: Tenant, config_file: Path) -> dict[str, str]:
    """The environment `trainport` runs in (tests/support/cli.py): the live server, the
    tenant's key, the empty config file, and none of this process's TRAINPORT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    return {
        **env,
        "TRAINPORT_CONFIG": str(config_file),
        "TRAINPORT_API_URL": api_url,
        "TRAINPORT_API_KEY": sdk_tenant.key,
    }


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    """A run file for `trainport run -f` (tests/support/cli.py's RUN_YAML)."""
    path = tmp_path / "run.yaml"
    path.write_text(RUN_YAML)
    return path
