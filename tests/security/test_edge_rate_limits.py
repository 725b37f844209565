"""Rate limits at the API's edge (issue 12, finding 7): per key, per org, failed
authentications per client address, and a cap on an org's waiting runs. Each test builds an
app with tight limits on this session's PostgreSQL (and Redis for the shared counters)."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app_state import app_rate_limiter, app_settings
from core.runs import run_tokens
from tests.factories import app_of, make_key, make_tenant, run_spec
from tests.support.rate_limits import MakeClient


def _assert_rate_limited(response: Any, code: str = "rate_limited") -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert int(response.headers["Retry-After"]) >= 1


def test_a_key_over_its_limit_gets_429_with_retry_after(limited: MakeClient) -> None:
    api = limited(rate_limit_per_key="5/hour")
    tenant = make_tenant(api)
    other_key = make_key(api, tenant, "member")
    run_id = api.post("/v1/runs", json=run_spec(), headers=tenant.headers).json()["id"]
    answers = [api.get(f"/v1/runs/{run_id}", headers=tenant.headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 3 + [429]
    _assert_rate_limited(answers[-1])
    assert api.get(f"/v1/runs/{run_id}", headers=other_key.headers).status_code == 200


def test_an_org_over_its_limit_gets_429_on_every_key(limited: MakeClient) -> None:
    api = limited(rate_limit_per_org="6/hour")
    tenant = make_tenant(api)
    member = make_key(api, tenant, "member")  # the org's first counted request
    answers = [api.get("/v1/me", headers=k.headers) for k in [tenant, member] * 3]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    _assert_rate_limited(answers[-1])
    assert api.get("/v1/me", headers=make_tenant(api).headers).status_code == 200


def test_the_org_limit_holds_before_a_body_is_read(limited: MakeClient) -> None:
    api = limited(rate_limit_per_org="2/hour")
    tenant = make_tenant(api)
    for _ in range(2):
        assert api.post("/v1/runs", json=run_spec(), headers=tenant.headers).status_code == 201
    _assert_rate_limited(api.post("/v1/runs", content=b"{not json", headers=tenant.headers))


def test_failed_authentications_are_throttled_per_client_address(limited: MakeClient) -> None:
    api = limited(rate_limit_failed_auth="5/hour", async_reads=False)
    valid = make_tenant(api)
    guesses = [
        api.get("/v1/runs", headers={"Authorization": f"Bearer tp_{secrets.token_hex(16)}"})
        for _ in range(6)
    ]
    assert [g.status_code for g in guesses] == [401] * 5 + [429]
    _assert_rate_limited(guesses[-1])
    # That address is refused outright for now; another address is not.
    assert api.get("/v1/me", headers=valid.headers).status_code == 429
    elsewhere = limited(address="198.51.100.9", app=api.app)
    assert elsewhere.get("/v1/me", headers=valid.headers).status_code == 200


def test_limits_are_shared_by_api_processes_through_redis(limited: MakeClient) -> None:
    shared = {
        "rate_limit_storage_url": "redis://127.0.0.1:6379/0",
        "rate_limit_per_key": "4/hour",
        "rate_limit_sync_seconds": 0,  # exact: one Redis round trip per limit and request
    }
    first, second = limited(**shared), limited(**shared)
    tenant = make_tenant(first)
    statuses = [c.get("/v1/me", headers=tenant.headers).status_code for c in [first, second] * 3]
    assert statuses == [200] * 4 + [429] * 2


@pytest.mark.parametrize("async_reads", [True, False])
def test_an_org_may_have_only_so_many_waiting_runs(limited: MakeClient, async_reads: bool) -> None:
    api = limited(max_waiting_runs_per_org=3, async_reads=async_reads)
    tenant = make_tenant(api)
    created = [api.post("/v1/runs", json=run_spec(), headers=tenant.headers) for _ in range(4)]
    assert [c.status_code for c in created] == [201] * 3 + [429]
    _assert_rate_limited(created[-1], "queue_full")
    assert "TRAINPORT_MAX_WAITING_RUNS_PER_ORG" in created[-1].json()["detail"]
    other = make_tenant(api)
    assert api.post("/v1/runs", json=run_spec(), headers=other.headers).status_code == 201


def test_every_authenticated_operation_documents_429(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            if "security" in operation:
                assert "429" in operation["responses"], (method, path)
                assert "Retry-After" in operation["responses"]["429"].get("headers", {})


def test_batched_redis_counts_reach_every_process_at_the_next_sync(limited: MakeClient) -> None:
    shared = {
        "rate_limit_storage_url": "redis://127.0.0.1:6379/0",
        "rate_limit_per_key": "4/hour",
    }
    first, second = limited(**shared), limited(**shared)
    tenant = make_tenant(first)
    assert [first.get("/v1/me", headers=tenant.headers).status_code for _ in range(3)] == [200] * 3
    _sync(first)  # what each process's next sync does
    assert second.get("/v1/me", headers=tenant.headers).status_code == 200  # the 4th of 4
    _sync(second)  # sends 1, learns the total: 4
    assert second.get("/v1/me", headers=tenant.headers).status_code == 429
    _sync(first)
    assert first.get("/v1/me", headers=tenant.headers).status_code == 429


def _sync(client: TestClient) -> None:
    """The client's process sends its counts to Redis and learns the totals, on its own loop."""
    assert client.portal is not None  # `limited` opened the client: its event loop runs
    client.portal.call(app_rate_limiter(app_of(client)).flush)


def test_an_address_throttled_for_bad_keys_still_serves_run_tokens(limited: MakeClient) -> None:
    """One hostile run guessing keys must not silence the other runs on its node."""
    api = limited(rate_limit_failed_auth="3/hour", async_reads=False)
    tenant = make_tenant(api)
    run_id = api.post("/v1/runs", json=run_spec(), headers=tenant.headers).json()["id"]
    for _ in range(4):
        api.get("/v1/me", headers={"Authorization": f"Bearer tp_{secrets.token_hex(16)}"})
    assert api.get("/v1/me", headers=tenant.headers).status_code == 429
    token = run_tokens.issue(app_settings(app_of(api)).secret_key.get_secret_value(), run_id, 0)
    for _ in range(5):  # neither refused nor counted, whatever the token's fate
        answer = api.get(f"/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code != 429, answer.text


def test_with_the_default_limits_500_guessed_keys_are_throttled(limited: MakeClient) -> None:
    """Finding 7 as found: 500 random keys in a row all got 401, unthrottled."""
    api = limited(address="192.0.2.77", async_reads=False)
    statuses = [
        api.get(
            "/v1/runs", headers={"Authorization": f"Bearer tp_{secrets.token_hex(16)}"}
        ).status_code
        for _ in range(500)
    ]
    assert statuses[:50] == [401] * 50  # the default allows 50 a second (and 1,000 a minute)
    assert set(statuses[50:]) <= {401, 429}
    assert 429 in statuses  # unless 500 requests took over 10 s
