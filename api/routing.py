"""The route class every router uses: a sync route commits its unit of work in its own thread.

FastAPI runs a sync route in a worker thread, then validates the response in another worker
thread, and only then leaves the session dependency, which would commit there. A request that
kept its pooled connection while queueing for that second thread could wait behind threads
that are themselves waiting for a connection: under a burst, every thread and connection ends
up waiting on another until the pool times out. Committing at the end of the route's own
thread hands the connection back before the request queues again; the session dependency
still rolls back on errors and commits whatever a route leaves open.

The same class settles who is calling before FastAPI reads the body (api/edge.py): a route
whose dependencies take a `Caller` or `RunCaller` authenticates first, so no unauthenticated
body is ever parsed, validated or answered with field errors.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from api import deps
from api.edge import CallerKind, authenticate_first


def _commit_on_return(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, Session):
                value.commit()
        return result

    return run


def caller_kind(dependant: Dependant) -> CallerKind | None:
    """Which caller a route takes through its dependencies, if any."""
    calls = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        calls.add(current.call)
        pending.extend(current.dependencies)
    if deps.get_run_caller in calls:
        return CallerKind.KEY_OR_RUN
    return CallerKind.KEY if deps.get_caller in calls else None


class UnitOfWorkRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _commit_on_return(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        kind = caller_kind(self.dependant)  # (called from APIRoute.__init__)
        on_loop = inspect.iscoroutinefunction(self.endpoint)

        async def route(request: Request) -> Response:
            if kind is not None:  # before the body is read: see the module docstring
                await authenticate_first(request, kind, on_loop)
            return await handler(await self.prepare_body(request))

        return route

    async def prepare_body(self, request: Request) -> Request:
        """The request as the route's handler should read it (YamlBodyRoute converts YAML)."""
        return request
