"""Secrets for the security tests: a canary value no test could find by chance, and a secret
set through the API (`POST /v1/secrets`) as an org's admin sets it.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import Tenant


def canary() -> str:
    return f"canary-{secrets.token_hex(16)}"


def set_secret(client: TestClient, who: Tenant, name: str, value: str, **extra: Any) -> Any:
    body = {"name": name, "value": value, **extra}
    response = client.post("/v1/secrets", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    return response.json()
