"""Bodies at the API's edge (issue 12, finding 6): the caller is authenticated before any body
is read, parsed or validated, on every route; YAML is parsed within bounds."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from fastapi.testclient import TestClient

from tests.api.routes import WRITE_ROUTES, fill
from tests.factories import Tenant

# Every path parameter, of today's routes and of routes added later, gets a harmless value.
IDS: defaultdict[str, str] = defaultdict(lambda: "x-1")
YAML = {"Content-Type": "application/yaml"}
# Each within the size bound; each breaks another bound, or the alias rule.
LAUGHS = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n"
    % ((ord("a") + i + 1,) * 2 + (ord("a") + i,) * 9)
    for i in range(20)
)
YAML_BOMBS = {
    "billion laughs": LAUGHS,
    "nested 10,000 deep": b"[" * 10_000 + b"]" * 10_000,
    "50,000 nodes": b"command: [" + b",".join(b"x" for _ in range(50_000)) + b"]\n",
    "nested maps 100 deep": b"".join(b"  " * i + b"k:\n" for i in range(100))
    + b"  " * 100
    + b"v\n",
}


def test_an_unauthenticated_empty_run_is_401_not_field_errors(client: TestClient) -> None:
    response = client.post("/v1/runs", json={})
    assert response.status_code == 401, response.text
    assert "errors" not in response.json()


@pytest.fixture(scope="module")
def stranger(client: TestClient) -> TestClient:
    """The same app, called from an address of its own: the matrix below sends two failed
    authentications per write route, which must not use up the failed-authentication budget
    (50/s per address) of the client the other tests share. With more than 25 write routes it
    outruns that budget itself, and waits as a 429 tells it."""
    return TestClient(client.app, client=("192.0.2.77", 50000))


@pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
def test_every_write_route_authenticates_before_it_reads_the_body(
    stranger: TestClient, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer tp_not_a_real_key_0000000000000000"}):
        response = stranger.request(method, fill(path, IDS), content=b"{not json", headers=headers)
        while response.status_code == 429:  # every route's two 401s outrun 50/s: wait as told
            time.sleep(float(response.headers.get("Retry-After", "1")))
            response = stranger.request(
                method, fill(path, IDS), content=b"{not json", headers=headers
            )
        assert response.status_code == 401, (method, path, response.text)


def test_an_unauthenticated_yaml_body_is_never_parsed(client: TestClient) -> None:
    response = client.post("/v1/runs", content=b"[" * 100_000, headers=YAML)
    assert response.status_code == 401, response.text


@pytest.mark.parametrize("bomb", YAML_BOMBS)
def test_a_yaml_bomb_is_refused_quickly(client: TestClient, tenant: Tenant, bomb: str) -> None:
    started = time.perf_counter()
    response = client.post("/v1/runs", content=YAML_BOMBS[bomb], headers={**tenant.headers, **YAML})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert time.perf_counter() - started < 5.0  # generous: refused on the event stream


def test_a_yaml_body_over_the_size_bound_is_413(client: TestClient, tenant: Tenant) -> None:
    body = b"name: x\ncommand: ['" + b"a" * 300_000 + b"']\n"
    response = client.post("/v1/runs", content=body, headers={**tenant.headers, **YAML})
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"


def test_a_yaml_run_within_bounds_is_created(client: TestClient, tenant: Tenant) -> None:
    body = b"image: python:3.11-slim\ncommand: [python, -c, 'print(1)']\nlabels: {team: a}\n"
    response = client.post("/v1/runs", content=body, headers={**tenant.headers, **YAML})
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["command"] == ["python", "-c", "print(1)"]
