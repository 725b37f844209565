"""Plain factory functions that read like the spec: make a tenant, create a run."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app_state import app_sessionmaker
from core import db
from core.db import session_scope
from core.log_archive import LogArchive
from core.logs import LogKey, format_lines
from core.settings import Settings
from core.tenants.service import bootstrap

# A webhook URL on a public address that resolves without DNS (an IP literal): nothing here
# ever delivers to it, and it passes the SSRF check at create time.
PUBLIC_HOOK = "https://93.184.215.14/hooks/trainport"


@dataclass(frozen=True)
class Tenant:
    org_id: str
    project_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def app_of(client: TestClient) -> FastAPI:
    """The app behind a test client (TestClient types it as any ASGI app), for api/app_state.py's
    accessors."""
    assert isinstance(client.app, FastAPI), client.app
    return client.app


def make_tenant(client: TestClient, name: str | None = None) -> Tenant:
    """A new organisation, its `default` project and an admin key, made as `bootstrap` does."""
    with session_scope(app_sessionmaker(app_of(client))) as session:
        made = bootstrap(session, name or f"org-{secrets.token_hex(5)}")
        return Tenant(made.org.id, made.project.id, made.secret)


def run_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "python:3.11-slim",
        "command": ["python", "-c", "print('hello')"],
    }
    spec.update(overrides)
    return spec


def create_run(client: TestClient, tenant: Tenant, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/runs", json=run_spec(**overrides), headers=tenant.headers)
    while response.status_code == 429:  # a well-behaved client: wait as told, then retry
        time.sleep(float(response.headers.get("Retry-After", "1")))
        response = client.post("/v1/runs", json=run_spec(**overrides), headers=tenant.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def make_key(client: TestClient, tenant: Tenant, role: str, **extra: Any) -> Tenant:
    """Another key of the same org, with `role`."""
    response = client.post(
        "/v1/api-keys", json={"name": f"{role}-key", "role": role, **extra}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    return Tenant(tenant.org_id, tenant.project_id, response.json()["key"])


_archives: dict[str, LogArchive] = {}


def log_archive(database_url: str, **options: Any) -> LogArchive:
    """The run logs in that database, as the workers and the API reach them (one engine per
    database for the whole session; `options` make an archive of its own on it)."""
    if database_url not in _archives:
        factory = db.make_sessionmaker(db.build_engine(Settings(database_url=database_url)))
        _archives[database_url] = LogArchive(factory)
    shared = _archives[database_url]
    return LogArchive(shared.factory, **options) if options else shared


def write_log(archive: LogArchive, run_id: str, attempt: int, rank: int, *lines: str) -> None:
    """A finished rank's log of `lines` on stdout, stored as a log writer stores it."""
    key = LogKey(run_id, attempt, rank)
    data = b"".join(format_lines("stdout", line, ()) for line in lines)
    cursor = archive.head(key).cursor
    archive.append(key, data, expected=cursor, cursor=str(int(cursor or 0) + 1))
    archive.finish(key)


def read_log(archive: LogArchive, run_id: str, attempt: int, rank: int) -> str:
    """A rank's whole stored log."""
    key, position, parts = LogKey(run_id, attempt, rank), 0, []
    while data := archive.page(key, position)[0]:
        parts.append(data)
        position += len(data)
    return b"".join(parts).decode(errors="replace")
