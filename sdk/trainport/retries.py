"""When to retry a request and how long to wait first: exponential backoff with full jitter.

Retried: connection failures, 408, 429 and 5xx, and 409s whose `code` says the server changed
nothing and a repeat may succeed (`concurrent_change`). Never retried: any other 4xx, and quota
errors (waiting seconds does not refill a quota). A `Retry-After` header (seconds or an HTTP
date) is honoured as given; one longer than `max_retry_after` ends the retries instead.

Requests that are not safe to repeat (creating a project or an API key: a repeat could make a
second one) are retried only when the server surely did not act: the connection was never made,
or the answer was 408 or 429. Run creation is safe: it carries an `Idempotency-Key`.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRYABLE_STATUSES = frozenset({408, 429})
NOT_ACTED_STATUSES = frozenset({408, 429})
RETRYABLE_CONFLICT_CODES = frozenset({"concurrent_change"})
NEVER_RETRIED_CODES = frozenset({"quota_exceeded", "quota_exhausted", "queue_full"})
DEFAULT_MAX_RETRIES = 2
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and the backoff bounds, in seconds.

    The n-th retry (n = 0, 1, ...) waits a uniformly random time in
    `[0, min(max_delay, initial_delay * 2**n)]` ("full jitter"), unless the server said
    `Retry-After`.
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def backoff_cap(self, retries_done: int) -> float:
        return float(min(self.max_delay, self.initial_delay * 2.0**retries_done))

    def backoff(self, retries_done: int) -> float:
        return self.jitter() * self.backoff_cap(retries_done)

    def next_delay(
        self,
        retries_done: int,
        outcome: httpx.Response | httpx.TransportError,
        *,
        idempotent: bool = True,
        now: datetime | None = None,
    ) -> float | None:
        """Seconds to wait before the next try, or None when this outcome is final."""
        if retries_done >= self.max_retries or not is_retryable(outcome, idempotent=idempotent):
            return None
        if isinstance(outcome, httpx.Response):
            hinted = retry_after_seconds(outcome.headers.get("retry-after"), now)
            if hinted is not None:
                return hinted if hinted <= self.max_retry_after else None
        return self.backoff(retries_done)


def is_retryable(outcome: httpx.Response | httpx.TransportError, *, idempotent: bool) -> bool:
    if isinstance(outcome, httpx.TransportError):
        if not isinstance(outcome, TRANSIENT_ERRORS):
            return False  # a bad URL or proxy setup fails the same way every time
        # A failed connect (or connect timeout) never reached the server.
        return idempotent or isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout)
    status = outcome.status_code
    if status < 400 or problem_code(outcome) in NEVER_RETRIED_CODES:
        return False
    if not idempotent:
        return status in NOT_ACTED_STATUSES
    if status == 409:
        return problem_code(outcome) in RETRYABLE_CONFLICT_CODES
    return status in RETRYABLE_STATUSES or status >= 500


def problem_code(response: httpx.Response) -> str | None:
    """The problem document's `code`, read cheaply from an error response."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: either delta-seconds or an HTTP date; None if absent."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
