"""Schemathesis hooks for the all-checks run (SCHEMATHESIS_HOOKS, test_openapi_schemathesis.py).

These refusals follow rules no OpenAPI document can state, and are accepted as known:

- the same `Idempotency-Key` with another body (422 `idempotency_key_reused`, as the IETF draft
  has it): a rule about the history of requests, which generated requests share keys without;
- a multipart upload with two parts of one path: a file's path is its part's filename, and the
  generator names every file part after its field (`files`);
- a code snapshot whose bytes do not hash to the digest in its URL (422 `digest_mismatch`): the
  URL names the sha256 of the body, which no schema can relate;
- a run whose `workdir` names a snapshot nobody uploaded (422 `code_snapshot_not_found`): a
  digest that matches its pattern is valid to the schema, yet only an upload makes it exist;
- a webhook URL whose host does not resolve to a public address (422
  `destination_not_allowed`): a fact of DNS at the time of the request, not of the document;
- `GET /v1/runs` with `changed_since` and a filter (422 `filter_not_with_changed_since`): a
  rule across query parameters, which OpenAPI cannot state;
- a `metrics.from_logs` pattern that is not an RE2 expression with a `step` group and a metric
  group: a grammar, which no JSON Schema keyword states. Only a 422 whose every error points
  into `/metrics/from_logs` is accepted.
- a usage window whose `from` is not before `to`, or more than 10 years from it (422
  `usage_window_invalid`), `to` defaulting to today: a rule across query parameters;
- a clone whose overrides make a spec a submission could not hold (422 `clone_spec_invalid`):
  `overrides` are dotted paths into the source run's stored spec, which no schema of the
  clone body can relate.

Every other failure is kept.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

DUPLICATE_PATHS = "Each file path may appear only once in a version."
KEY_REUSED = '"code":"idempotency_key_reused"'
DIGEST_MISMATCH = '"code":"digest_mismatch"'
UNKNOWN_SNAPSHOT = '"code":"code_snapshot_not_found"'
FEED_FILTER = '"code":"filter_not_with_changed_since"'
NOT_PUBLIC = '"code":"destination_not_allowed"'
USAGE_WINDOW = '"code":"usage_window_invalid"'
CLONE_SPEC = '"code":"clone_spec_invalid"'


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if response.status_code != 422:
        return True
    multipart = "multipart/form-data" in str(case.media_type or "")
    known = KEY_REUSED in response.text or (multipart and DUPLICATE_PATHS in response.text)
    known = known or DIGEST_MISMATCH in response.text or UNKNOWN_SNAPSHOT in response.text
    known = known or FEED_FILTER in response.text or NOT_PUBLIC in response.text
    known = known or USAGE_WINDOW in response.text or CLONE_SPEC in response.text
    return not (known or _only_log_patterns(response.text))


def _only_log_patterns(body: str) -> bool:
    try:
        errors = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        return False
    pointers = [str(error.get("pointer", "")) for error in errors if isinstance(error, dict)]
    return bool(pointers) and all(p.startswith("/metrics/from_logs/") for p in pointers)
