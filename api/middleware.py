"""Pure-ASGI middleware: a request id on every exchange, caps on request body size, and the
GPU-hour rates a request prices usage at."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from core.errors import FieldError
from core.storage.base import PayloadTooLarge
from core.usage import rates
from core.usage.rates import RateCard


def _minted() -> str:
    # A correlation id, not a secret: the Mersenne Twister (reseeded in each forked worker),
    # not a system call for os.urandom on every request.
    return f"{random.getrandbits(64):016x}"


class RequestIdMiddleware:
    """Honours a sane incoming `X-Request-Id`, otherwise mints one; echoes it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isalnum() else _minted()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-Id"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


class NulGuardMiddleware:
    """Answers 422 for a NUL character in the path or the query string.

    No id, name or filter contains one, and PostgreSQL refuses it in text, so without this a
    `%00` anywhere in a URL would reach the driver and come back as a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            bad = ["path"] if "\x00" in scope["path"] else []
            bad += [name for name, value in query if "\x00" in name + value]
            if bad:
                errors = [FieldError.for_parameter(name, "must not contain NUL") for name in bad]
                detail = f"NUL characters are not accepted in {', '.join(bad)}."
                response = problem(
                    422, "validation_error", "Invalid request", detail, Request(scope), errors
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Answers 413 for a body over `max_bytes`, by Content-Length or by what actually arrives.

    The body is read up front (it is small by construction) and replayed to the app, so an
    oversized stream is refused before any handler sees a byte of it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, rules: Sequence[BodyRule] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.rules = tuple(rules)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        rule = next((r for r in self.rules if r.path.fullmatch(scope["path"])), None)
        limit = rule.max_bytes if rule else self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._reject(scope, receive, send, limit)
            return
        if rule is not None and rule.streamed:
            await self.app(scope, _counted(receive, limit), send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await self._reject(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem(
            413,
            "payload_too_large",
            "Payload too large",
            f"Request bodies are limited to {limit} bytes.",
            Request(scope),
        )
        await response(scope, receive, send)


@dataclass(frozen=True)
class BodyRule:
    """Another body limit for the POSTs whose path matches; `streamed` ones are not buffered."""

    path: re.Pattern[str]
    max_bytes: int
    streamed: bool = False  # uploads: passed through as they arrive, counted on the way


def _counted(receive: Receive, limit: int) -> Receive:
    """`receive`, raising PayloadTooLarge (a 413 from the route) once past `limit` bytes."""
    size = 0

    async def counting() -> Message:
        nonlocal size
        message = await receive()
        size += len(message.get("body", b""))
        if size > limit:
            raise PayloadTooLarge(limit)
        return message

    return counting


class RateCardMiddleware:
    """Makes this app's GPU-hour rates current for the request (core/usage/rates.py), so every
    run document it renders, on any path, prices usage at this app's rates."""

    def __init__(self, app: ASGIApp, card: RateCard) -> None:
        self.app = app
        self.card = card

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            rates.use(self.card)  # this request's context only (and its threads' copies)
        await self.app(scope, receive, send)
