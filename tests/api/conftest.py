"""Fixtures for the API behaviour suite: live uvicorn processes on this session's database.

Most tests use the in-process `client`; the ones about several processes, real concurrency and
long polls talk HTTP to servers started by `start_server` (tests/support/servers.py) as
subprocesses, exactly as `uvicorn api.main:app` runs in production. Servers are shared by the
session; tests isolate themselves by tenant.
"""

from __future__ import annotations

import pytest

from tests.support.servers import LiveServer, StartServer


@pytest.fixture(scope="session")
def server_a(start_server: StartServer, postgres_url: str) -> LiveServer:
    """An API process with a tiny connection pool (2 + 2 overflow)."""
    return start_server(postgres_url, database_pool_size="2")


@pytest.fixture(scope="session")
def server_b(start_server: StartServer, postgres_url: str) -> LiveServer:
    """A second API process on the same database, with the default pool."""
    return start_server(postgres_url)
