"""How Trainport's own processes log: quiet by default, one level for all of them.

`TRAINPORT_LOG_LEVEL` (default WARNING) sets the level of the API, the workers and the relay.
Lifecycle lines (a process started, is ready, stopped) go to the `trainport.lifecycle` logger,
which logs at INFO whatever the level, so a quiet server still says what it is doing; the
per-request and per-task lines (access log, every beat tick and task) appear at INFO and below.
"""

from __future__ import annotations

import logging

from core.settings import Settings

lifecycle = logging.getLogger("trainport.lifecycle")
CHATTY_LEVELS = frozenset({"DEBUG", "INFO"})  # where access logs and task lines belong


def configure(settings: Settings) -> None:
    """Root level from the settings; lifecycle lines at INFO or below, always."""
    logging.basicConfig(level=settings.log_level, format="%(levelname)s:%(name)s:%(message)s")
    lifecycle.setLevel(min(logging.INFO, logging.getLevelName(settings.log_level)))


def is_chatty(settings: Settings) -> bool:
    """Whether per-request and per-task lines are wanted (the access log, Celery's banner)."""
    return settings.log_level in CHATTY_LEVELS
