"""What `/openapi.json` says about errors: each operation lists the problems it may answer with.

Every error leaves as `application/problem+json` (see api/problems.py). FastAPI only knows its
own 422 shape, so after it builds the document this module replaces that with the `Problem`
schema and adds the statuses each operation can produce, so generated clients (and contract
tests) know what an error looks like.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from core.storable import NO_NUL_PATTERN, STORABLE_JSON, STORABLE_JSON_SCHEMA

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
DESCRIPTIONS = {
    401: "No valid API key (missing, unknown, revoked or expired)",
    403: "The key's role or project scope does not allow this",
    404: "Not found, or not visible to this key's organisation",
    409: "Conflicts with the resource's current state",
    412: "If-Match did not match the current ETag",
    413: "The request body is too large",
    415: "The body's Content-Type is not one this operation reads",
    422: "Invalid input; `errors` points at each bad field",
    429: "Rate limited (per key, per org, failed authentications per address) or too many "
    "waiting runs (`queue_full`); retry after `Retry-After` seconds",
    500: "Unexpected server error; quote `request_id` when reporting it",
    503: "The database is unreachable or overloaded; retry after `Retry-After` seconds",
}
RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
# No text the API takes may hold NUL (api/middleware.NulGuardMiddleware for URLs and headers,
# core/storable.check_storable for bodies): stated on every string that states no grammar.
NO_NUL = NO_NUL_PATTERN
# Schemas that take or quote any text: problems quote what a request held, and a provenance
# verification judges whatever it is given (a NUL makes it invalid, not unreadable).
ANY_TEXT_SCHEMAS = (
    "Problem", "FieldProblem", "VerifyRequest", "SignedRecord", "CheckpointClaim", "FileDigest",
)  # fmt: skip


class FieldProblem(BaseModel):
    """One bad input: a JSON pointer into the body, or the name of a query/path/header parameter."""

    pointer: str | None = Field(default=None, description="JSON pointer into the body")
    parameter: str | None = Field(default=None, description="query, path or header parameter")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document, the body of every error response."""

    type: str = Field(description="URI naming the kind of problem")
    title: str
    status: int
    detail: str
    code: str = Field(description="stable machine-readable code, e.g. `not_found`")
    instance: str | None = Field(default=None, description="the request path")
    request_id: str | None = None
    errors: list[FieldProblem] | None = Field(default=None, description="validation errors only")


def document_problems(app: FastAPI) -> None:
    """Have `app.openapi()` describe problem responses; the document is built once, on first use."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        document = build()
        if fresh:
            add_problem_responses(document)
            state_input_rules(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def add_problem_responses(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            responses = operation.setdefault("responses", {})
            for status in possible_problems(method, operation):
                declared = responses.get(str(status), {}).get("description")
                # A route's own wording wins over ours; FastAPI's generic 422 text does not.
                keep = declared and declared != "Validation Error"
                responses[str(status)] = {
                    "description": declared if keep else DESCRIPTIONS[status],
                    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
                    **({"headers": RETRY_AFTER} if status in {429, 503} else {}),
                }


def possible_problems(method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation can answer with, read from what it accepts."""
    parameters = {p["name"].lower() for p in operation.get("parameters", [])}
    has_body = "requestBody" in operation
    checks: dict[int, bool] = {
        401: "security" in operation,
        403: "security" in operation,
        404: "security" in operation and (bool(parameters) or has_body),
        409: "security" in operation and method != "get",
        412: "if-match" in parameters,
        413: has_body,
        415: has_body,
        422: bool(parameters) or has_body,
        429: "security" in operation,  # api/edge.py: every authenticated route is limited
        500: True,
        503: "security" in operation,  # every authenticated route reads the database
    }
    return [status for status, applies in checks.items() if applies]


def state_input_rules(document: dict[str, Any]) -> None:
    """State what the API takes, as it reads it: every free-form string of a request (no
    pattern, format, enum or const) holds no NUL, and a parameter that may be left out is
    absent, never the text "null"."""
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                parameter["schema"] = _not_null(parameter.get("schema", {}))
                _no_nul(parameter["schema"])
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _no_nul(media.get("schema", {}))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[STORABLE_JSON] = STORABLE_JSON_SCHEMA
    for name, schema in schemas.items():
        if name not in ANY_TEXT_SCHEMAS:
            _no_nul(schema)


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` as X, keeping the parameter's own annotations."""
    choices = [c for c in schema.get("anyOf", []) if c.get("type") != "null"]
    if len(choices) != 1 or len(schema["anyOf"]) != 2:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**choices[0], **rest}


def _no_nul(schema: Any) -> None:
    if isinstance(schema, list):
        for item in schema:
            _no_nul(item)
        return
    if not isinstance(schema, dict):
        return
    free = not {"pattern", "format", "enum", "const", "contentMediaType"} & schema.keys()
    if schema.get("type") == "string" and free:
        schema["pattern"] = NO_NUL
    for key, value in schema.items():
        if key not in {"examples", "default", "example", "const", "enum"}:
            _no_nul(value)
