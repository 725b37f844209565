"""The route class every router uses: a sync route commits its unit of work in its own thread.

FastAPI runs a sync route in a worker thread, then validates the response in another worker
thread, and only then leaves the session dependency, which would commit there. A request that
kept its pooled connection while queueing for that second thread could wait behind threads
that are themselves waiting for a connection: under a burst, every thread and connection ends
up waiting on another until the pool times out. Committing at the end of the route's own
thread hands the connection back before the request queues again; the session dependency
still rolls back on errors and commits whatever a route leaves open.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy.orm import Session


def _commit_on_return(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, Session):
                value.commit()
        return result

    return run


class UnitOfWorkRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _commit_on_return(endpoint)
        super().__init__(path, endpoint, **kwargs)
