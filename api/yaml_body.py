"""Accept run documents as YAML as well as JSON: the two forms are the same document.

A YAML body is parsed safely (no tags, no aliases, so no "billion laughs") and handed to FastAPI
as the equivalent JSON, so validation and errors are identical for both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import yaml
from fastapi import Request, Response

from api.routing import UnitOfWorkRoute
from core.errors import FieldError, InvalidInput

YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases (*name) are not accepted")
        return super().compose_node(parent, index)


def parse_yaml(raw: bytes) -> Any:
    try:
        return yaml.load(raw, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        message = f"The body is not valid YAML: {exc}".splitlines()[0]
    except RecursionError:  # the composer recurses once per nesting level
        message = "The body is not valid YAML: it is nested too deeply"
    raise InvalidInput(message, [FieldError("", message)])


class YamlBodyRoute(UnitOfWorkRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media in YAML_TYPES:
                request = await _as_json(request)
            return await handler(request)

        return route


async def _as_json(request: Request) -> Request:
    document = parse_yaml(await request.body())
    body = json.dumps(document, default=str).encode()
    headers = [
        (k, v) for k, v in request.scope["headers"] if k not in {b"content-type", b"content-length"}
    ]
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    converted = Request({**request.scope, "headers": headers}, request.receive)
    converted._body = body  # Starlette reads a cached body from here
    return converted
