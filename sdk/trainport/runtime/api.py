"""The run's own connection to the platform: its token, its routes, downloads.

Only what a run may call with its run token (docs/runtime-api.md, section 2): posting metrics,
heartbeats and checkpoints, reading the manifests and files of the datasets it pinned, and
presigning its own storage (section 7). Presigned URLs are absolute and go without the token.
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

    def upload(self, url: str, source: Path | bytes) -> None:
        """PUT a file (streamed, its length sent first: S3 takes no chunked PUT) or bytes to a
        presigned URL."""
        try:
            if isinstance(source, bytes):
                response = self._http.put(url, content=source, timeout=60.0)
            else:
                with source.open("rb") as body:
                    length = {"Content-Length": str(source.stat().st_size)}
                    response = self._http.put(url, content=body, headers=length, timeout=None)
        except httpx.HTTPError as exc:
            raise RunAPIError(f"PUT {_bare(url)}: {exc or type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise RunAPIError(
                f"PUT {_bare(url)}: HTTP {response.status_code}", response.status_code
            )

    def fetch(self, url: str) -> bytes | None:
        """A small object from a presigned GET URL; None when it does not exist."""
        try:
            response = self._http.get(url, timeout=60.0)
        except httpx.HTTPError as exc:
            raise RunAPIError(f"GET {_bare(url)}: {exc or type(exc).__name__}") from exc
        if response.status_code == 404:
            return None
        if response.status_code >= 300:
            raise RunAPIError(
                f"GET {_bare(url)}: HTTP {response.status_code}", response.status_code
            )
        return response.content

    def delete(self, url: str) -> None:
        """DELETE through a presigned URL; an object already gone counts as deleted."""
        try:
            response = self._http.delete(url, timeout=60.0)
        except httpx.HTTPError as exc:
            raise RunAPIError(f"DELETE {_bare(url)}: {exc or type(exc).__name__}") from exc
        if response.status_code >= 300 and response.status_code != 404:
            raise RunAPIError(
                f"DELETE {_bare(url)}: HTTP {response.status_code}", response.status_code
            )

    def close(self) -> None:
        self._http.close()


def _bare(url: str) -> str:
    """A presigned URL without its query: the signature stays out of error messages and logs."""
    return url.split("?", 1)[0]
