"""What every resource holds: the transport it sends its requests through."""

from __future__ import annotations

from trainport._http import AsyncHTTP, SyncHTTP


class SyncResource:
    def __init__(self, http: SyncHTTP) -> None:
        self._http = http


class AsyncResource:
    def __init__(self, http: AsyncHTTP) -> None:
        self._http = http
