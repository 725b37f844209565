"""The dashboard's live platform as its browser tests see it, and signing in to it.

tests/dashboard/conftest.py starts the platform (`platform`) and the browser (`page`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from playwright.sync_api import Page


@dataclass(frozen=True)
class Platform:
    url: str
    key: str
    api: httpx.Client
    database_url: str

    def create_run(self, **spec: object) -> dict[str, Any]:
        response = self.api.post("/v1/runs", json=spec)
        assert response.status_code == 201, response.text
        made: dict[str, Any] = response.json()
        return made


def sign_in(page: Page, platform: Platform, hash_: str = "#/runs", key: str | None = None) -> None:
    page.goto(f"{platform.url}/ui/{hash_}")
    page.fill("#api-key", key or platform.key)
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("#identity")
