"""The HTTP layer under both clients: auth, timeouts, the retry loop, errors as exceptions.

Resources describe a call as an `APIRequest`; `SyncHTTP` and `AsyncHTTP` send it, retrying as
`RetryPolicy` decides, and return the response or raise the typed error. Everything above this
module speaks models, never status codes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import quote

import httpx

from trainport._version import __version__
from trainport.config import ResolvedConfig
from trainport.errors import APIConnectionError, APITimeoutError, error_from_response
from trainport.retries import RetryPolicy

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
SyncSleep = Callable[[float], None]
AsyncSleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class APIRequest:
    """One API call, independent of how (sync or async) it is sent."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    timeout: float | httpx.Timeout | None = None  # None: the client's default
    idempotent: bool = True
    files: Any = None  # multipart parts, as httpx takes them; file objects are rewound on retry
    content: Callable[[], Any] | None = None  # a raw body, made afresh for every try


def segment(value: str) -> str:
    """An id made safe to put in a URL path (`/` and friends escaped)."""
    return quote(value, safe="")


def query_params(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Query pairs: None dropped, sequences repeated (`status=a&status=b`), booleans lower-case."""
    pairs: list[tuple[str, str]] = []
    for name, value in (params or {}).items():
        values = value if isinstance(value, list | tuple | set | frozenset) else [value]
        pairs += [(name, _query_value(v)) for v in values if v is not None]
    return pairs


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def connection_error(exc: httpx.TransportError, base_url: str) -> APIConnectionError:
    request = exc.request if _has_request(exc) else None
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"The Trainport API at {base_url} did not answer in time.", request)
    reason = str(exc) or type(exc).__name__
    return APIConnectionError(f"Cannot reach the Trainport API at {base_url}: {reason}", request)


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - httpx raises RuntimeError when the request is unset
    except RuntimeError:
        return False
    return True


class _Transport:
    """What both transports share: settings, headers and how a request is built."""

    def __init__(self, config: ResolvedConfig, policy: RetryPolicy) -> None:
        self.base_url = config.base_url
        self.api_key = config.require_key()
        self.retry_policy = policy
        self.headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": f"trainport-python/{__version__}",
        }

    def _build_args(self, call: APIRequest) -> dict[str, Any]:
        args: dict[str, Any] = {
            "method": call.method,
            "url": self.base_url + call.path,
            "params": query_params(call.params),
            "headers": {**self.headers, **(call.headers or {})},
        }
        if call.json is not None:
            args["json"] = call.json
        if call.files is not None:
            args["files"] = call.files
        if call.content is not None:
            args["content"] = call.content()
        if isinstance(call.timeout, httpx.Timeout):
            args["timeout"] = call.timeout
        elif call.timeout is not None:
            args["timeout"] = httpx.Timeout(call.timeout, connect=DEFAULT_TIMEOUT.connect)
        return args


class SyncHTTP(_Transport):
    def __init__(
        self,
        config: ResolvedConfig,
        policy: RetryPolicy,
        http_client: httpx.Client | None = None,
        timeout: float | httpx.Timeout | None = None,
        sleep: SyncSleep | None = None,
    ) -> None:
        super().__init__(config, policy)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout or DEFAULT_TIMEOUT)
        self._sleep = sleep or time.sleep

    def send(self, call: APIRequest, *, stream: bool = False) -> httpx.Response:
        """The response to `call` (status < 400), after any retries; raises the typed error."""
        retries = 0
        while True:
            request = self._http.build_request(**self._build_args(call))
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry_policy.next_delay(retries, exc, idempotent=call.idempotent)
                if delay is None:
                    raise connection_error(exc, self.base_url) from exc
            else:
                if response.status_code < 400:
                    return response
                response.read()
                response.close()
                delay = self.retry_policy.next_delay(retries, response, idempotent=call.idempotent)
                if delay is None:
                    raise error_from_response(response)
            self._sleep(delay)
            retries += 1

    def pause(self, seconds: float) -> None:
        self._sleep(seconds)

    def json(self, call: APIRequest) -> Any:
        response = self.send(call)
        return response.json() if response.content else None

    @contextmanager
    def stream(self, call: APIRequest) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives; closed when the block ends."""
        response = self.send(call, stream=True)
        try:
            yield response
        finally:
            response.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()


class AsyncHTTP(_Transport):
    def __init__(
        self,
        config: ResolvedConfig,
        policy: RetryPolicy,
        http_client: httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = None,
        sleep: AsyncSleep | None = None,
    ) -> None:
        super().__init__(config, policy)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout or DEFAULT_TIMEOUT)
        self._sleep = sleep or asyncio.sleep

    async def send(self, call: APIRequest, *, stream: bool = False) -> httpx.Response:
        """The response to `call` (status < 400), after any retries; raises the typed error."""
        retries = 0
        while True:
            request = self._http.build_request(**self._build_args(call))
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = self.retry_policy.next_delay(retries, exc, idempotent=call.idempotent)
                if delay is None:
                    raise connection_error(exc, self.base_url) from exc
            else:
                if response.status_code < 400:
                    return response
                await response.aread()
                await response.aclose()
                delay = self.retry_policy.next_delay(retries, response, idempotent=call.idempotent)
                if delay is None:
                    raise error_from_response(response)
            await self._sleep(delay)
            retries += 1

    async def pause(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def json(self, call: APIRequest) -> Any:
        response = await self.send(call)
        return response.json() if response.content else None

    @asynccontextmanager
    async def stream(self, call: APIRequest) -> AsyncIterator[httpx.Response]:
        response = await self.send(call, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()
