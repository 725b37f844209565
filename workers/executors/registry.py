"""Which executor runs a cluster's work, built once per worker process from settings.

A cluster row names its executor kind; `executor_for(kind)` returns the one instance this
process uses for it: `local` or `kubernetes` (built on first use, so a worker that never
runs on a cluster never loads the Kubernetes client).
"""

from __future__ import annotations

import threading

from core.logs import LogStore
from core.settings import Settings
from workers.executors.base import Executor
from workers.executors.local import LocalExecutor

_lock = threading.Lock()
_instances: dict[tuple[str, str, str], Executor] = {}


class UnknownExecutor(LookupError):
    """A cluster names an executor this worker does not have."""


def _build(kind: str, settings: Settings) -> Executor:
    if kind == "local":
        return LocalExecutor(
            settings.state_dir,
            LogStore(settings.log_root),
            settings.public_url,
            settings.cancel_grace_seconds,
        )
    if kind == "kubernetes":
        from workers.executors.kubernetes import executor_from_settings

        return executor_from_settings(settings)
    raise UnknownExecutor(f"no executor of kind {kind!r} in this worker")


def executor_for(kind: str, settings: Settings) -> Executor:
    """The process-wide executor of `kind` for these settings."""
    key = (kind, str(settings.state_dir), str(settings.log_root))
    with _lock:
        if key not in _instances:
            _instances[key] = _build(kind, settings)
        return _instances[key]
