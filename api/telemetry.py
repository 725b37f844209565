"""The API's view of itself: one access line and request metrics per request, and `/metrics`.

`TelemetryMiddleware` wraps every HTTP exchange: it binds the request id to the logging context
(so every line logged while serving it carries it), counts the request by route template (never
the raw path: ids would make a series per run), method and status, observes its latency (event
streams excepted: their length is the client's choice), and logs one `trainport.access` line at
INFO with the request id, org, route, status and duration: invisible at the default WARNING,
as the quiet-server rule wants.

`GET /metrics` is off unless `TRAINPORT_METRICS_ENABLED=true`. It shows org ids and the
platform's load, so it is not for the public internet: scrape it from inside the cluster, and
set `TRAINPORT_METRICS_TOKEN` where the API port is reachable from outside, to require
`Authorization: Bearer <token>` (Prometheus sends it with `authorization.credentials`).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import process_logging, telemetry

UNMATCHED = "unmatched"  # a 404 for a path no route has: one series, whatever was asked


def stream_open() -> AbstractContextManager[None]:
    return telemetry.counted_open(telemetry.STREAMS_OPEN)


def long_poll_open() -> AbstractContextManager[None]:
    return telemetry.counted_open(telemetry.LONG_POLLS_OPEN)


class TelemetryMiddleware:
    """Request id in the logging context; request metrics; the access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        token = process_logging.request_id.set(state.get("request_id"))
        org_token = process_logging.org_id.set(None)  # set once the caller is known (edge)
        answered: dict[str, Any] = {"status": 500, "stream": False}

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                headers = dict(message.get("headers") or [])
                answered["stream"] = headers.get(b"content-type", b"").startswith(
                    b"text/event-stream"
                )
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            self._record(scope, state, answered, time.perf_counter() - started)
            process_logging.request_id.reset(token)
            process_logging.org_id.reset(org_token)

    @staticmethod
    def _record(scope: Scope, state: dict[str, Any], answered: dict[str, Any], took: float) -> None:
        route = getattr(scope.get("route"), "path", None) or UNMATCHED
        method, status = scope["method"], answered["status"]
        telemetry.HTTP_REQUESTS.labels(route, method, str(status)).inc()
        if not answered["stream"]:
            telemetry.HTTP_LATENCY.labels(route, method).observe(took)
        principal = state.get("principal")
        process_logging.access.info(
            "%s %s %d %.1fms",
            method,
            route,
            status,
            took * 1000,
            extra={
                "request_id": state.get("request_id"),
                "org_id": getattr(principal, "org_id", None),
                "route": route,
                "method": method,
                "status": status,
                "duration_ms": round(took * 1000, 2),
            },
        )
