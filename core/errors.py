"""The one error model: each error knows its HTTP status and a stable machine-readable code.

The API renders these as RFC 9457 problem documents; the SDK maps `code` back to exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One bad input: a JSON pointer into the body, or the query/header parameter, and why."""

    pointer: str
    message: str
    parameter: str | None = None

    @classmethod
    def for_parameter(cls, name: str, message: str) -> FieldError:
        return cls("", message, parameter=name)


@dataclass
class TrainportError(Exception):
    detail: str
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"
    errors: list[FieldError] = field(default_factory=list)

    def __str__(self) -> str:
        return self.detail

    def with_code(self, code: str) -> TrainportError:
        """The same error under a more specific stable code."""
        self.code = code
        return self


class NotFound(TrainportError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, 404, "not_found", "Not found")


class Unauthenticated(TrainportError):
    def __init__(self, detail: str = "A valid API key is required.") -> None:
        super().__init__(detail, 401, "unauthenticated", "Unauthenticated")


class Forbidden(TrainportError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, 403, "forbidden", "Forbidden")


class Conflict(TrainportError):
    def __init__(self, detail: str, code: str = "conflict") -> None:
        super().__init__(detail, 409, code, "Conflict")


class PreconditionFailed(TrainportError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, 412, "precondition_failed", "Precondition failed")


class InvalidInput(TrainportError):
    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail, 422, "validation_error", "Invalid request", errors or [])


class DatabaseUnavailable(TrainportError):
    """The database could not be reached, or refused more work for now: worth a retry."""

    def __init__(
        self, detail: str = "The database is unreachable or overloaded; retry shortly."
    ) -> None:
        super().__init__(detail, 503, "database_unavailable", "Service unavailable")


class IllegalTransition(TrainportError):
    """A status change the lifecycle forbids; a bug in the caller, never silently ignored."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, 409, "illegal_transition", "Illegal status change")
