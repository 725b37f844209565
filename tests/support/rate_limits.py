"""Apps with tight rate limits, for the tests of the API's edge (a pytest plugin, registered for
the whole suite by tests/conftest.py).

`limited` makes clients of fresh apps on this session's PostgreSQL (and Redis for the shared
counters) with the settings a test names, each from a client address of its own choosing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings

MakeClient = Callable[..., TestClient]


@pytest.fixture
def limited(postgres_url: str) -> Iterator[MakeClient]:
    """A client of a fresh app with `settings` (and a client address, for per-address limits)."""
    opened: list[TestClient] = []

    def make(address: str = "203.0.113.7", app: Any = None, **settings: Any) -> TestClient:
        """With `app`: another client address on that app (whose lifespan is already on)."""
        fresh = app is None
        app = app or create_app(
            Settings(database_url=postgres_url, key_touch_interval_seconds=0, **settings)
        )
        client = TestClient(app, raise_server_exceptions=False, client=(address, 40000))
        if fresh:
            opened.append(client.__enter__())
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)
