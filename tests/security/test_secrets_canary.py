"""The canary: a secret's value, once set, is found nowhere it should not be (issue 12).

A real run goes API → outbox → relay → Redis → Celery worker (a subprocess tree, as in
production) → local executor → a process that prints its secret. Then the value is looked for
in every row of every table, every Redis value, every log line and file of every process, every
API answer the test received, and the stored run log, where it must appear only as `***`. (The
rendered Kubernetes manifests are checked in test_secrets_kubernetes.py.)
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.app import create_app
from api.app_state import app_engine
from core.settings import Settings
from tests.factories import make_tenant
from tests.support.platforms import REDIS_URL, StartPlatform, wait_for_run

SECRETS_KEY = "canary-test-secrets-key-" + "k" * 16
PRINTS_ITS_SECRET = (
    "import hashlib, os, sys\n"
    "value = os.environ['CANARY']\n"
    "print('the secret is', value)\n"
    "print('on stderr:', value, file=sys.stderr)\n"
    "print('digest', hashlib.sha256(value.encode()).hexdigest())\n"
    "print('redaction list visible:', 'TRAINPORT_SHIM_REDACT' in os.environ)\n"
)


class Recorder:
    """Every API answer the test received, to search afterwards."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.answers: list[httpx.Response] = []

    def __call__(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, url, **kwargs)
        self.answers.append(response)
        return response


@pytest.fixture
def database_url(make_database: Callable[[], str]) -> str:
    return make_database()


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=database_url,
        key_touch_interval_seconds=0,
        state_dir=tmp_path / "state",  # the platform's: logs are read from there
        secrets_key=SECRETS_KEY,
    )
    app = create_app(settings)
    yield TestClient(app, raise_server_exceptions=False)
    app_engine(app).dispose()


def test_a_secret_value_appears_nowhere_but_the_runs_own_environment(
    api: TestClient,
    database_url: str,
    start_platform: StartPlatform,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    value = f"canary-{secrets.token_hex(24)}"
    platform = start_platform(database_url, secrets_key=SECRETS_KEY)
    tenant = make_tenant(api)
    call = Recorder(api)
    created = call(
        "POST", "/v1/secrets", json={"name": "canary", "value": value}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    body = {
        "command": [sys.executable, "-c", PRINTS_ITS_SECRET],
        "env": {"CANARY": {"secret": "canary"}},
    }
    run = call("POST", "/v1/runs", json=body, headers=tenant.headers).json()
    done = wait_for_run(api, tenant, run["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["status_message"]

    log = call("GET", f"/v1/runs/{run['id']}/logs", headers=tenant.headers).text
    assert f"digest {hashlib.sha256(value.encode()).hexdigest()}" in log  # it had the value
    assert "the secret is ***" in log
    assert "on stderr: ***" in log
    assert "redaction list visible: False" in log
    for path in (f"/v1/runs/{run['id']}", f"/v1/runs/{run['id']}/events", "/v1/runs"):
        call("GET", path, headers=tenant.headers)
    call("GET", "/v1/secrets", headers=tenant.headers)
    call("GET", "/v1/secrets/canary", headers=tenant.headers)
    call("PUT", "/v1/secrets/canary", json={"value": value}, headers=tenant.headers)

    assert not _in_answers(call.answers, value)
    assert not _in_database(database_url, value)
    assert not _in_redis(value)
    assert not _in_files(tmp_path, value), "a log or state file holds the value"
    assert value not in platform.log_text()
    assert value not in caplog.text


def _in_answers(answers: list[httpx.Response], value: str) -> list[str]:
    return [f"{r.request.method} {r.request.url}" for r in answers if value in r.text]


def _in_database(database_url: str, value: str) -> list[str]:
    """Tables with a row whose text form holds the value (every column, JSON included)."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    found = []
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        assert len(tables) > 10
        for (table,) in tables:
            hits = conn.execute(
                f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s',
                (f"%{value}%",),
            ).fetchone()
            if hits and hits[0]:
                found.append(table)
    return found


def _in_redis(value: str) -> list[str]:
    """Keys of the test Redis whose value holds the canary (messages, results, anything)."""
    client = redis.Redis.from_url(REDIS_URL)
    needle = value.encode()
    found = []
    for key in client.scan_iter(count=1000):
        if any(needle in (item or b"") for item in _redis_items(client, key)):
            found.append(key.decode(errors="replace"))
    return found


def _redis_items(client: redis.Redis, key: bytes) -> list[Any]:
    answer = client.type(key)  # bytes: the client does not decode responses
    kind = answer.decode() if isinstance(answer, bytes) else answer
    if kind == "string":
        return [client.get(key)]
    if kind == "list":
        return list(client.lrange(key, 0, -1))
    if kind == "hash":
        return [part for pair in client.hgetall(key).items() for part in pair]
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return list(client.zrange(key, 0, -1))
    return []


def _in_files(folder: Path, value: str) -> list[Path]:
    needle = value.encode()
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]
