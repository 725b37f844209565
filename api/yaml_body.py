"""Accept run documents as YAML as well as JSON: the two forms are the same document.

A YAML body is parsed safely and within bounds, off the event loop, after the caller has been
authenticated (api/routing.py), and handed to FastAPI as the equivalent JSON, so validation and
errors are identical for both. Bounds: at most `TRAINPORT_YAML_MAX_BYTES`
(413 beyond), `TRAINPORT_YAML_MAX_DEPTH` levels of nesting and `TRAINPORT_YAML_MAX_NODES`
nodes (422 beyond); no aliases (so no "billion laughs") and no tags beyond YAML's own.

The bounds are checked on libyaml's event stream before any node is built, so a hostile
document costs one linear scan of at most the size bound, never a tree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from api.routing import UnitOfWorkRoute
from core.errors import FieldError, InvalidInput, TrainportError
from core.settings import Settings

YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
# libyaml when it was built in (it usually is): the same grammar, ten times faster.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPENING = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSING = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


@dataclass(frozen=True)
class YamlBounds:
    max_bytes: int
    max_depth: int
    max_nodes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> YamlBounds:
        return cls(settings.yaml_max_bytes, settings.yaml_max_depth, settings.yaml_max_nodes)


class YamlTooLarge(TrainportError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"YAML bodies are limited to {limit} bytes; send JSON or a smaller document.",
            413,
            "payload_too_large",
            "Payload too large",
        )


def parse_yaml(raw: bytes, bounds: YamlBounds) -> Any:
    """The document in `raw`; 413 or 422 (InvalidInput) when it breaks a bound or the grammar."""
    if len(raw) > bounds.max_bytes:
        raise YamlTooLarge(bounds.max_bytes)
    try:
        _check_shape(raw, bounds)
        return yaml.load(raw, Loader=_LOADER)  # noqa: S506 - a SafeLoader (C or Python)
    except yaml.YAMLError as exc:
        message = f"The body is not valid YAML: {exc}".splitlines()[0]
    except RecursionError:  # the pure-Python composer recurses once per nesting level
        message = "The body is not valid YAML: it is nested too deeply"
    raise InvalidInput(message, [FieldError("", message)])


def _check_shape(raw: bytes, bounds: YamlBounds) -> None:
    """Refuse aliases, and documents nested or sized beyond `bounds`, from events alone."""
    depth = nodes = 0
    for event in yaml.parse(raw, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases (*name) are not accepted")
        if isinstance(event, _OPENING):
            depth += 1
            if depth > bounds.max_depth:
                raise yaml.YAMLError(f"it is nested deeper than {bounds.max_depth} levels")
        elif isinstance(event, _CLOSING):
            depth -= 1
        if isinstance(event, (*_OPENING, yaml.ScalarEvent)):
            nodes += 1
            if nodes > bounds.max_nodes:
                raise yaml.YAMLError(f"it has more than {bounds.max_nodes} nodes")


class YamlBodyRoute(UnitOfWorkRoute):
    def body_media_types(self) -> tuple[str, ...]:
        json_types = super().body_media_types()
        return (*json_types, *sorted(YAML_TYPES)) if json_types else ()

    async def prepare_body(self, request: Request) -> Request:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media in YAML_TYPES:
            return await _as_json(request)
        return request


async def _as_json(request: Request) -> Request:
    settings: Settings = request.app.state.settings
    raw = await request.body()
    # In a worker thread: even a bounded document must not hold up the event loop.
    body = await run_in_threadpool(_converted, raw, YamlBounds.from_settings(settings))
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


def _converted(raw: bytes, bounds: YamlBounds) -> bytes:
    return json.dumps(parse_yaml(raw, bounds), default=str).encode()
