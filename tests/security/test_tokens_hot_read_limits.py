"""The two hottest reads, `GET /v1/runs` and `GET /v1/runs/{id}`, count against the caller's org
as every other route does (issue 12, finding 7): an org cannot outrun its limit by spreading its
reads over many keys, or over its runs' tokens. Every way those reads authenticate is covered:
the one-statement read (event loop and worker thread), the ORM path a queued run takes, the
conditional read, the long poll and a run token."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import Tenant, make_key, make_tenant, run_spec
from tests.support.rate_limits import MakeClient
from tests.support.training import admit, start


def _run(api: Any, tenant: Tenant) -> str:
    response = api.post("/v1/runs", json=run_spec(), headers=tenant.headers)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


@pytest.mark.parametrize("async_reads", [True, False])
def test_the_hot_reads_count_against_the_org_on_every_key_and_token(
    limited: MakeClient, async_reads: bool
) -> None:
    api = limited(rate_limit_per_org="13/hour", async_reads=async_reads)
    tenant, other = make_tenant(api), make_tenant(api)
    foreign = _run(api, other)
    member = make_key(api, tenant, "member")  # the org's 1st counted request
    pending, queued = _run(api, tenant), _run(api, tenant)  # 2nd, 3rd
    admit(api, queued)
    running = start(api, _run(api, tenant))  # 4th
    etag = api.get(f"/v1/runs/{pending}", headers=member.headers).headers["ETag"]  # 5th
    reads: list[tuple[str, dict[str, str], dict[str, Any]]] = [
        ("/v1/runs", tenant.headers, {}),
        (f"/v1/runs/{pending}", member.headers, {}),
        (f"/v1/runs/{queued}", tenant.headers, {}),  # the ORM path: counted once
        (f"/v1/runs/{pending}", {**tenant.headers, "If-None-Match": etag}, {}),
        (f"/v1/runs/{running.run_id}", running.headers, {}),
        (f"/v1/runs/{pending}", member.headers, {"wait": 1, "resource_version": 0}),
        ("/v1/runs", member.headers, {}),
        (f"/v1/runs/{foreign}", tenant.headers, {}),  # another org's run: 404, counted: the 13th
    ]
    answers = [api.get(path, headers=headers, params=params) for path, headers, params in reads]
    assert [a.status_code for a in answers] == [200, 200, 200, 304, 200, 200, 200, 404]
    for path, headers, params in reads:  # each way in, now refused
        refused = api.get(path, headers=headers, params=params)
        assert refused.status_code == 429, (path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) >= 1
    assert api.get("/v1/runs", headers=other.headers).status_code == 200
