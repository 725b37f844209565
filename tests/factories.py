"""Plain factory functions that read like the spec: make a tenant, create a run."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.db import session_scope
from core.tenants.service import bootstrap


@dataclass(frozen=True)
class Tenant:
    org_id: str
    project_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_tenant(client: TestClient, name: str | None = None) -> Tenant:
    """A new organisation, its `default` project and an admin key, made as `bootstrap` does."""
    app: FastAPI = client.app  # type: ignore[assignment]
    with session_scope(app.state.sessionmaker) as session:
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
