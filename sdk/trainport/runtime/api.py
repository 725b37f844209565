"""The run's own connection to the platform: its token, its routes, downloads.

Only what a run may call with its run token (docs/runtime-api.md, section 2): posting metrics,
heartbeats and checkpoints, and reading the manifests and files of the datasets it pinned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from trainport._version import __version__

REQUEST_TIMEOUT_S = 10.0
DOWNLOAD_CHUNK = 1 << 20


class RunAPIError(Exception):
    """A request the API answered with an error, or could not be sent at all."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def temporary(self) -> bool:
        return self.status is None or self.status in (408, 429) or self.status >= 500


class RunAPI:
    """A small httpx client with the run token; absolute URLs (presigned) go without it."""

    def __init__(self, api_url: str, run_id: str, token: str | None) -> None:
        self.api_url, self.run_id = api_url.rstrip("/"), run_id
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            headers={"User-Agent": f"trainport-runtime/{__version__}"}, timeout=REQUEST_TIMEOUT_S
        )

    def run_path(self, suffix: str) -> str:
        return f"/v1/runs/{quote(self.run_id, safe='')}{suffix}"

    def post(self, path: str, body: Any, timeout: float = REQUEST_TIMEOUT_S) -> Any:
        return self._request("POST", path, json=body, timeout=timeout)

    def get(self, path: str, timeout: float = REQUEST_TIMEOUT_S) -> Any:
        return self._request("GET", path, timeout=timeout)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, self.api_url + path, headers=self._auth, **kwargs)
        except httpx.HTTPError as exc:
            raise RunAPIError(f"{method} {path}: {exc or type(exc).__name__}") from exc
        if response.status_code >= 300:
            detail = f"{method} {path}: HTTP {response.status_code} {response.text[:300]}"
            raise RunAPIError(detail, response.status_code)
        return response.json() if response.content else None

    def download(self, url: str, destination: Path) -> None:
        """A file from an API route (relative, with the token) or a presigned URL (absolute)."""
        absolute = url.startswith(("http://", "https://"))
        target = url if absolute else self.api_url + url
        headers = {} if absolute and not url.startswith(self.api_url) else self._auth
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._http.stream("GET", target, headers=headers, timeout=60.0) as response:
                if response.status_code >= 300:
                    response.read()
                    raise RunAPIError(
                        f"GET {url}: HTTP {response.status_code}", response.status_code
                    )
                with destination.open("wb") as sink:
                    for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                        sink.write(chunk)
        except httpx.HTTPError as exc:
            raise RunAPIError(f"GET {url}: {exc or type(exc).__name__}") from exc

    def close(self) -> None:
        self._http.close()
