"""The SDK against the API's rate limits (issue 12): a 429 `rate_limited` is waited out as its
`Retry-After` says and retried; a full waiting room (`queue_full`) is raised at once, typed."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import trainport
from api.app import create_app
from core.settings import Settings
from tests.factories import make_tenant


@pytest.fixture
def tight_api(postgres_url: str) -> Any:
    def make(**settings: Any) -> TestClient:
        app = create_app(Settings(database_url=postgres_url, async_reads=False, **settings))
        return TestClient(app, raise_server_exceptions=False)

    return make


def test_the_sdk_waits_out_a_rate_limit_and_succeeds(tight_api: Any) -> None:
    with tight_api(rate_limit_per_key="2/second") as api:
        statuses: list[int] = []
        api.event_hooks["response"].append(lambda response: statuses.append(response.status_code))
        tenant = make_tenant(api)
        sdk = trainport.Client(base_url="http://testserver", api_key=tenant.key, http_client=api)
        for _ in range(3):  # the third is refused, waits for the next window, and is retried
            sdk.runs.list(limit=1)
        assert statuses == [200, 200, 429, 200]


def test_a_full_waiting_room_is_raised_at_once_as_a_quota(tight_api: Any) -> None:
    with tight_api(max_waiting_runs_per_org=1) as api:
        tenant = make_tenant(api)
        sdk = trainport.Client(base_url="http://testserver", api_key=tenant.key, http_client=api)
        sdk.runs.create(command=["python", "-c", "pass"])
        with pytest.raises(trainport.QuotaExceeded) as raised:
            sdk.runs.create(command=["python", "-c", "pass"])
        assert raised.value.code == "queue_full"
