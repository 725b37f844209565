"""`trainport.Client` and `trainport.AsyncClient`: the entry points, one resource per attribute.

    client = trainport.Client()            # TRAINPORT_API_URL / TRAINPORT_API_KEY or a profile
    run = client.runs.create(trainport.RunSpec.from_yaml("run.yaml"))
    client.runs.wait(run, timeout=3600)

Both clients hold one connection pool; use them as context managers or call `close()`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import TracebackType

import httpx

from trainport._http import APIRequest, AsyncHTTP, AsyncSleep, SyncHTTP, SyncSleep
from trainport.config import ResolvedConfig, resolve
from trainport.models import Me
from trainport.resources import (
    ApiKeys,
    AsyncApiKeys,
    AsyncCode,
    AsyncDatasets,
    AsyncProjects,
    AsyncProvenanceResource,
    AsyncRuns,
    AsyncSecrets,
    AsyncWebhooks,
    Code,
    Datasets,
    Projects,
    ProvenanceResource,
    Runs,
    Secrets,
    Webhooks,
)
from trainport.retries import RetryPolicy

_ME = APIRequest("GET", "/v1/me")


def _settings(
    base_url: str | None,
    api_key: str | None,
    profile: str | None,
    config_file: str | Path | None,
    max_retries: int | None,
    retry_policy: RetryPolicy | None,
) -> tuple[ResolvedConfig, RetryPolicy]:
    config = resolve(base_url, api_key, profile, Path(config_file) if config_file else None)
    config.require_key()  # fail here, at construction, not at the first request
    policy = retry_policy or RetryPolicy()
    if max_retries is not None:
        policy = dataclasses.replace(policy, max_retries=max_retries)
    return config, policy


class Client:
    """A synchronous Trainport client.

    Settings come from the arguments, else `TRAINPORT_API_URL` / `TRAINPORT_API_KEY`, else the
    profile (`profile=`, `TRAINPORT_PROFILE`) of `~/.config/trainport/config.toml`. Raises
    ConfigurationError at once when no API key is found.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        profile: str | None = None,
        config_file: str | Path | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        sleep: SyncSleep | None = None,
    ) -> None:
        self.config, policy = _settings(
            base_url, api_key, profile, config_file, max_retries, retry_policy
        )
        self._http = SyncHTTP(self.config, policy, http_client, timeout, sleep)
        self.code = Code(self._http)
        self.runs = Runs(self._http, self.code)
        self.projects = Projects(self._http)
        self.api_keys = ApiKeys(self._http)
        self.secrets = Secrets(self._http)
        self.webhooks = Webhooks(self._http)
        self.datasets = Datasets(self._http)
        self.provenance = ProvenanceResource(self._http)

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._http.retry_policy

    def me(self) -> Me:
        """The organisation and API key behind this client."""
        return Me.model_validate(self._http.json(_ME))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of `Client`: the same resources and methods, awaited."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        profile: str | None = None,
        config_file: str | Path | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: AsyncSleep | None = None,
    ) -> None:
        self.config, policy = _settings(
            base_url, api_key, profile, config_file, max_retries, retry_policy
        )
        self._http = AsyncHTTP(self.config, policy, http_client, timeout, sleep)
        self.code = AsyncCode(self._http)
        self.runs = AsyncRuns(self._http, self.code)
        self.projects = AsyncProjects(self._http)
        self.api_keys = AsyncApiKeys(self._http)
        self.secrets = AsyncSecrets(self._http)
        self.webhooks = AsyncWebhooks(self._http)
        self.datasets = AsyncDatasets(self._http)
        self.provenance = AsyncProvenanceResource(self._http)

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._http.retry_policy

    async def me(self) -> Me:
        """The organisation and API key behind this client."""
        return Me.model_validate(await self._http.json(_ME))

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
