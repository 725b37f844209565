"""Typed exceptions, mapped from the server's problem documents (RFC 9457 with a stable `code`).

Every error the SDK raises is a `TrainportError`. HTTP errors are `APIStatusError`s, specialised
first by the problem's `code` (e.g. `quota_exceeded`) and then by the status; network failures
are `APIConnectionError`s. Catch the narrowest class you can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

# `queue_full`: the org has as many waiting runs as the server allows; waiting seconds does not
# help until some start, so it is a quota, not a rate limit.
QUOTA_CODES = frozenset({"quota_exceeded", "quota_exhausted", "queue_full"})


class TrainportError(Exception):
    """Base of every error the SDK raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(TrainportError):
    """The client cannot start: no API key, a malformed config file, an unknown profile."""


class APIConnectionError(TrainportError):
    """The server could not be reached, or the connection broke before an answer came."""

    def __init__(self, message: str, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    """The server did not answer in time."""


class WaitTimeout(TrainportError, TimeoutError):
    """`runs.wait` gave up before the run reached one of the awaited statuses."""

    def __init__(self, message: str, run: Any = None) -> None:
        super().__init__(message)
        self.run = run


class RunNameError(TrainportError, LookupError):
    """A run given by name that names no run, or several, among the runs this key sees;
    `.candidates` holds the runs that carry the name (newest first)."""

    def __init__(self, message: str, name: str, candidates: list[Any]) -> None:
        super().__init__(message)
        self.name = name
        self.candidates = candidates


class RunNameNotFound(RunNameError):
    """No run this key can see has that name."""


class AmbiguousRunName(RunNameError):
    """Several runs this key can see have that name: address one by its id."""


@dataclass(frozen=True)
class FieldError:
    """One bad input: a JSON pointer into the body (`/compute/nodes`) or a parameter name."""

    message: str
    pointer: str | None = None
    parameter: str | None = None

    @property
    def location(self) -> str:
        return self.pointer or self.parameter or "/"

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class APIStatusError(TrainportError):
    """The server answered with an error status; the problem document's fields are attributes."""

    def __init__(self, response: httpx.Response, problem: dict[str, Any]) -> None:
        self.response = response
        self.problem = problem
        self.status_code = response.status_code
        self.code = str(problem.get("code") or f"http_{response.status_code}")
        self.title = str(problem.get("title") or response.reason_phrase or "Error")
        self.detail = str(problem.get("detail") or self.title)
        self.request_id: str | None = problem.get("request_id") or response.headers.get(
            "x-request-id"
        )
        self.errors = [_field_error(e) for e in problem.get("errors") or [] if isinstance(e, dict)]
        super().__init__(f"{self.detail} ({self.code}, HTTP {self.status_code})")


class BadRequest(APIStatusError):
    """400 and the other 4xx statuses that have no class of their own."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong, revoked or expired."""


class PermissionDenied(APIStatusError):
    """403: the key is valid but its role or project scope does not allow this."""


class NotFound(APIStatusError):
    """404: no such object in your organisation (another org's objects look exactly the same)."""


class Conflict(APIStatusError):
    """409: the object's state forbids this (e.g. deleting a run that is still running)."""


class PreconditionFailed(APIStatusError):
    """412: `If-Match` named a version the object has since moved past."""


class ValidationError(APIStatusError):
    """422: the request was malformed; `.errors` points at each bad field."""


class QuotaExceeded(APIStatusError):
    """The organisation's quota does not allow this (`quota_exceeded`, `quota_exhausted`, or
    `queue_full`: too many runs waiting)."""


class RateLimited(APIStatusError):
    """429: too many requests; retried automatically, raised when the retries run out."""


class ServerError(APIStatusError):
    """5xx: the server failed; quote `.request_id` when you report it."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    422: ValidationError,
    429: RateLimited,
}


def _field_error(raw: dict[str, Any]) -> FieldError:
    return FieldError(
        message=str(raw.get("message", "invalid value")),
        pointer=raw.get("pointer"),
        parameter=raw.get("parameter"),
    )


def read_problem(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error response; a minimal one when the body is not JSON."""
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return {"status": response.status_code, "detail": text or response.reason_phrase}


def error_class(status: int, code: str | None) -> type[APIStatusError]:
    if code in QUOTA_CODES:
        return QuotaExceeded
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, BadRequest)


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The typed exception for an error response (the body must already be read)."""
    problem = read_problem(response)
    code = problem.get("code")
    return error_class(response.status_code, code if isinstance(code, str) else None)(
        response, problem
    )
