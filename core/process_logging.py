"""How Trainport's own processes log: quiet by default, one level for all of them.

`TRAINPORT_LOG_LEVEL` (default WARNING) sets the level of the API, the workers and the relay.
Lifecycle lines (a process started, is ready, stopped) go to the `trainport.lifecycle` logger,
which logs at INFO whatever the level, so a quiet server still says what it is doing; the
per-request and per-task lines (access log, every beat tick and task) appear at INFO and below.

`TRAINPORT_LOG_FORMAT=json` writes each line as one JSON object (time, level, logger, message,
and the ids below), for a log shipper; `text` (the default, for the embedded server) keeps
`LEVEL:logger:message`. Every line carries what is known of its context, from context
variables the request or task sets: `request_id` and `org_id` in the API, `run_id` and
`attempt` on a worker's lines about a run (`run_context`). Secrets never reach a line: no code
logs a credential, and `Redact` masks anything shaped like an API key or a run token should
one ever appear in a message (an exception's text, a library's line).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from core.settings import Settings

lifecycle = logging.getLogger("trainport.lifecycle")
access = logging.getLogger("trainport.access")  # one line per request, at INFO
CHATTY_LEVELS = frozenset({"DEBUG", "INFO"})  # where access logs and task lines belong
TEXT_FORMAT = "%(levelname)s:%(name)s:%(message)s"

request_id: ContextVar[str | None] = ContextVar("trainport_request_id", default=None)
org_id: ContextVar[str | None] = ContextVar("trainport_org_id", default=None)
run_id: ContextVar[str | None] = ContextVar("trainport_run_id", default=None)
attempt: ContextVar[int | None] = ContextVar("trainport_attempt", default=None)
_CONTEXT: dict[str, ContextVar[Any]] = {
    "request_id": request_id,
    "org_id": org_id,
    "run_id": run_id,
    "attempt": attempt,
}
# API keys (`tp_` + 43 url-safe characters), run tokens (`tpr_<subject>.<mac>`), and bearer
# headers, whatever follows them.
_SECRET_SHAPES = re.compile(r"\btpr?_[A-Za-z0-9_\-.]{16,}|(?i:bearer\s+)\S+")
# The attributes every LogRecord has; anything else on a record was passed as `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


@contextmanager
def run_context(run: str | None, attempt_number: int | None = None) -> Iterator[None]:
    """Lines logged inside the block (in this thread or task) carry the run id and attempt."""
    tokens = (run_id.set(run), attempt.set(attempt_number))
    try:
        yield
    finally:
        run_id.reset(tokens[0])
        attempt.reset(tokens[1])


class ContextFilter(logging.Filter):
    """Puts the context variables that are set on the record (`record.run_id`, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, variable in _CONTEXT.items():
            value = variable.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


class Redact(logging.Filter):
    """Masks key- and token-shaped text in the message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask(text: str) -> str:
    return _SECRET_SHAPES.sub(lambda m: m.group(0)[:4] + "[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context ids, `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`LEVEL:logger:message`, with the run's id and attempt appended when they are known."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        run = getattr(record, "run_id", None)
        if run is not None and run not in text:
            text += f" [run {run} attempt {getattr(record, 'attempt', '?')}]"
        return text


def handler(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing the configured format, with the context ids, secrets masked."""
    chosen = logging.StreamHandler(stream)
    chosen.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    chosen.addFilter(ContextFilter())
    chosen.addFilter(Redact())
    return chosen


def configure(settings: Settings) -> None:
    """Root level and format from the settings; lifecycle lines at INFO or below, always."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_trainport", False)]:
        root.removeHandler(old)
    if not any(not getattr(h, "_trainport", False) for h in root.handlers):
        added = handler(settings)
        added._trainport = True  # type: ignore[attr-defined]
        root.addHandler(added)
    root.setLevel(settings.log_level)
    lifecycle.setLevel(min(logging.INFO, logging.getLevelName(settings.log_level)))


def is_chatty(settings: Settings) -> bool:
    """Whether per-request and per-task lines are wanted (the access log, Celery's banner)."""
    return settings.log_level in CHATTY_LEVELS
