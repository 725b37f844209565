"""Every error leaves as RFC 9457 `application/problem+json`, with a stable `code`.

No stack trace or SQL reaches a client: unexpected errors become a 500 that carries the request
id, and the same id is logged with the traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import DatabaseUnavailable, FieldError, TrainportError

PROBLEM_TYPE_BASE = "https://trainport.dev/problems/"
BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's own 400 detail
_BODY = FieldError("", "not a readable JSON document")
log = logging.getLogger("trainport.api")


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    request: Request | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request is not None:
        body["instance"] = request.url.path
        body["request_id"] = getattr(request.state, "request_id", None)
    if errors:
        body["errors"] = [_field(e) for e in errors]
    return ProblemResponse(body, status_code=status, headers=headers)


def _field(error: FieldError) -> dict[str, str]:
    if error.parameter is not None:
        return {"parameter": error.parameter, "message": error.message}
    return {"pointer": error.pointer, "message": error.message}


def _validation_errors(exc: RequestValidationError) -> list[FieldError]:
    out: dict[tuple[str | None, str], list[str]] = {}
    for err in exc.errors():
        where, *path = err.get("loc", ()) or ("body",)
        # "Value error, " is how pydantic prefixes our validators' messages: not for users.
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            path = []  # its loc holds a character offset, not a field: the body as a whole
        if where == "body":
            path = _document_path(path, exc.body, missing=err.get("type") == "missing")
            pointer = "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}" for p in path)
            key: tuple[str | None, str] = (None, pointer)
        else:
            key = (str(path[0]) if path else str(where), "")
        if message not in out.setdefault(key, []):
            out[key].append(message)
    return [
        _one_error(parameter, pointer, messages) for (parameter, pointer), messages in out.items()
    ]


def _document_path(path: list[Any], body: Any, *, missing: bool) -> list[Any]:
    """The part of pydantic's `loc` that names places in the document.

    For a union (`str | SecretRef`) pydantic adds the member it tried (`constrained-str`,
    `SecretRef`) to the location; those are its internal names, not fields, so every step that
    is not a key or index of the body is dropped (a missing field, last, is kept: it is named
    by the schema, not the body).
    """
    kept: list[Any] = []
    node = body
    for index, part in enumerate(path):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        ):
            node = node[part]
        elif not (missing and index == len(path) - 1) and body is not None:
            continue
        kept.append(part)
    return kept


def _one_error(parameter: str | None, pointer: str, messages: list[str]) -> FieldError:
    """The errors of the union members at one place, as one: what would have been accepted."""
    message = "; or ".join(messages)
    return (
        FieldError.for_parameter(parameter, message) if parameter else FieldError(pointer, message)
    )


async def _trainport_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, TrainportError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.status == 429:
        headers = {"Retry-After": str(getattr(exc, "retry_after", 1))}
    if exc.status == 503:
        headers = {"Retry-After": "1"}
        request_id = getattr(request.state, "request_id", "-")
        log.warning("database unavailable request_id=%s: %s", request_id, exc.__cause__ or exc)
    return problem(exc.status, exc.code, exc.title, exc.detail, request, exc.errors, headers)


async def _database_error(request: Request, exc: Exception) -> ProblemResponse:
    """The sync engine could not connect, lost its connection, or waited too long for one.

    (SQLAlchemy's OperationalError is the driver's: connection failures, and also a statement
    cancelled or a deadlock broken by the server; all of them are worth a retry.)
    """
    unavailable = DatabaseUnavailable()
    unavailable.__cause__ = exc
    return await _trainport_error(request, unavailable)


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc)
    summary = "; ".join(f"{e.parameter or e.pointer or '/'}: {e.message}" for e in errors[:3])
    return problem(422, "validation_error", "Invalid request", summary, request, errors)


def allowed_methods(request: Request) -> str:
    """Every method of every route whose path matches (Starlette's 405 names only the first
    route's), plus OPTIONS, for `Allow`. A path that matches routes of different specificity
    is the resource of the most specific ones: `/v1/runs/plan` is not the run `plan`."""
    matching = [
        route
        for route in iter_route_contexts(request.app.routes)
        if route.path_regex.match(request.url.path)
    ]
    fewest = min((len(route.param_convertors) for route in matching), default=0)
    methods = {"OPTIONS"}
    for route in matching:
        if len(route.param_convertors) == fewest:
            methods |= set(route.methods or ())
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = {"Allow": allowed_methods(request)}
        if request.method == "OPTIONS":  # RFC 9110 9.3.7: what this resource supports
            return Response(status_code=204, headers=allow)
        exc.headers = allow
    if exc.status_code == 400:
        # The framework's answer to a body it could not even decode (JSON too deep or with huge
        # numbers, broken multipart): the same 422 as any other malformed body.
        detail = "The body is not a JSON document this server can read (too deep or too large)."
        if exc.detail != BODY_PARSE_ERROR:
            detail = f"The body could not be read: {exc.detail}"
        return problem(422, "validation_error", "Invalid request", detail, request, [_BODY])
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return problem(
        exc.status_code,
        code,
        str(exc.detail) if exc.status_code != 404 else "Not found",
        "No such route." if exc.status_code == 404 else str(exc.detail),
        request,
        headers=dict(exc.headers or {}),
    )


async def _unexpected(request: Request, exc: Exception) -> ProblemResponse:
    request_id = getattr(request.state, "request_id", "-")
    log.error("unhandled error request_id=%s", request_id, exc_info=exc)
    return problem(
        500,
        "internal_error",
        "Internal server error",
        f"Something went wrong on our side. Quote request id {request_id} when reporting it.",
        request,
        headers={"X-Request-Id": str(request_id)},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(TrainportError, _trainport_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
