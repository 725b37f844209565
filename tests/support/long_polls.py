"""Long polls in the background, for the API's long-poll tests (PostgreSQL and the embedded
mode): `Poll` waits on one run over HTTP, and the times the tests hold it to.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.factories import Tenant

WAIT_S = 10
PROMPT_S = 3.0  # "well under the wait time"
BLOCKED_S = 0.5  # long enough to see that a poll is really waiting


class Poll(threading.Thread):
    """One long poll in the background; `result` and `elapsed` once it answers."""

    def __init__(self, url: str, tenant: Tenant, run: dict[str, Any], wait: int = WAIT_S) -> None:
        super().__init__(daemon=True)
        self.target_url = f"{url}/v1/runs/{run['id']}"
        self.params = {"wait": wait, "resource_version": run["resource_version"]}
        self.headers = tenant.headers
        self.result: httpx.Response | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        started = time.monotonic()
        self.result = httpx.get(
            self.target_url, params=self.params, headers=self.headers, timeout=WAIT_S + 20
        )
        self.elapsed = time.monotonic() - started
