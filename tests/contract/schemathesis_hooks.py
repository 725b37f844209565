"""Schemathesis hooks for the all-checks run (SCHEMATHESIS_HOOKS, test_openapi_schemathesis.py).

Two refusals follow rules no OpenAPI document can state, and are accepted as known:

- the same `Idempotency-Key` with another body (422 `idempotency_key_reused`, as the IETF draft
  has it): a rule about the history of requests, which generated requests share keys without;
- a multipart upload with two parts of one path: a file's path is its part's filename, and the
  generator names every file part after its field (`files`).

Every other failure is kept.
"""

from __future__ import annotations

from typing import Any

import schemathesis

DUPLICATE_PATHS = "Each file path may appear only once in a version."
KEY_REUSED = '"code":"idempotency_key_reused"'


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    if response.status_code != 422:
        return True
    multipart = "multipart/form-data" in str(case.media_type or "")
    known = KEY_REUSED in response.text or (multipart and DUPLICATE_PATHS in response.text)
    return not known
