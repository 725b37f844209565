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

It is also the one place that states what a request may carry: a query parameter
the route does not declare is a 422 naming it (`POST /v1/runs?dry_run=true` must never create
a real run), and a body in a media type the route does not read is a 415. Both are decided
from the route's own declarations, computed once when the route is built.
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
from core.errors import FieldError, InvalidInput, TrainportError

JSON_MEDIA = "application/json"


def _commit_on_return(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, Session):
                value.commit()
        return result

    return run


def _dependants(dependant: Dependant) -> list[Dependant]:
    """The route's dependant and every sub-dependency's, flattened."""
    found, pending = [], [dependant]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(current.dependencies)
    return found


def caller_kind(dependant: Dependant) -> CallerKind | None:
    """Which caller a route takes through its dependencies, if any."""
    calls = {current.call for current in _dependants(dependant)}
    if deps.get_run_caller in calls:
        return CallerKind.KEY_OR_RUN
    return CallerKind.KEY if deps.get_caller in calls else None


def declared_query(dependant: Dependant) -> frozenset[str]:
    """The query parameter names a route takes, its dependencies' included."""
    return frozenset(p.alias for d in _dependants(dependant) for p in d.query_params)


def check_query(query: frozenset[str], request: Request) -> None:
    """422 for a query parameter the route does not take (not ignored: it may have meant
    something to the caller, like `dry_run`)."""
    if not request.scope["query_string"]:
        return  # the common case costs one lookup
    unknown = sorted(set(request.query_params.keys()) - query)
    if unknown:
        takes = f"it takes {', '.join(sorted(query))}" if query else "it takes none"
        message = f"not a query parameter of this route; {takes}"
        raise InvalidInput(
            f"Unknown query parameter {', '.join(unknown)}: {takes}.",
            [FieldError.for_parameter(name, message) for name in unknown],
        )


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def readable_json(media: str) -> bool:
    """JSON, or a `+json` structured syntax suffix (RFC 6839), as FastAPI reads them."""
    return media == JSON_MEDIA or (media.startswith("application/") and media.endswith("+json"))


class UnitOfWorkRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _commit_on_return(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        kind = caller_kind(self.dependant)  # (called from APIRoute.__init__)
        on_loop = inspect.iscoroutinefunction(self.endpoint)
        query = declared_query(self.dependant)
        media = self.body_media_types()

        async def route(request: Request) -> Response:
            if kind is not None:  # before the body is read: see the module docstring
                await authenticate_first(request, kind, on_loop)
            check_query(query, request)
            # RFC 9110 8.3: a body without a Content-Type may be taken as octet-stream. (Looked
            # at only where the route reads a body: most requests are GETs.)
            if media and _has_body(request):
                sent = media_type(request) or OCTET_STREAM
                if not reads_media(media, sent):
                    raise UnsupportedMediaType(media, media_type(request))
            return await handler(await self.prepare_body(request))

        return route

    def body_media_types(self) -> tuple[str, ...]:
        """The media types this route reads a body in (none: it takes no body)."""
        declared = (self.openapi_extra or {}).get("requestBody", {}).get("content")
        if declared:
            return tuple(declared)
        return (JSON_MEDIA,) if self.body_field is not None else ()

    async def prepare_body(self, request: Request) -> Request:
        """The request as the route's handler should read it (YamlBodyRoute converts YAML)."""
        return request


OCTET_STREAM = "application/octet-stream"


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return length not in (None, "0") or "transfer-encoding" in request.headers


def reads_media(accepted: tuple[str, ...], media: str) -> bool:
    return media in accepted or (JSON_MEDIA in accepted and readable_json(media))


class UnsupportedMediaType(TrainportError):
    def __init__(self, accepted: tuple[str, ...], sent: str) -> None:
        what = sent or "a body without a Content-Type"
        super().__init__(
            f"This route reads {' or '.join(accepted)} bodies, not {what}; send one of those "
            "with its Content-Type header.",
            415,
            "unsupported_media_type",
            "Unsupported media type",
        )
