"""The app's own route table, flattened: the single source the matrix tests iterate over."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute, iter_route_contexts

from api.app import create_app
from core.settings import Settings

PATH_PARAM = re.compile(r"{(\w+)}")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def route_objects() -> list[APIRoute]:
    """Every API route of a fresh app, included routers flattened."""
    app = create_app(Settings(database_url="sqlite://"))  # never connects: routes only
    contexts = iter_route_contexts(app.routes)
    return [c.original_route for c in contexts if isinstance(c.original_route, APIRoute)]


def api_routes() -> list[tuple[str, str]]:
    """(method, full path) of every API route."""
    app = create_app(Settings(database_url="sqlite://"))
    return sorted(
        (method, str(context.path))
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        for method in context.methods or ()
    )


def fill(path: str, ids: dict[str, str]) -> str:
    """`/v1/runs/{run_id}` with the id named by its parameter."""
    return PATH_PARAM.sub(lambda match: ids[match.group(1)], path)


def schema_routes() -> list[tuple[str, str]]:
    """(method, full path) of every route the OpenAPI document states (not the pages)."""
    app = create_app(Settings(database_url="sqlite://"))
    return sorted(
        (method, str(context.path))
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and context.original_route.include_in_schema
        for method in context.methods or ()
    )


ROUTES = api_routes()
SCHEMA_ROUTES = schema_routes()
WRITE_ROUTES = [(m, p) for m, p in ROUTES if m in WRITE_METHODS and p.startswith("/v1")]
