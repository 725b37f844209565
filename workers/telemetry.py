"""The workers' metrics endpoint, and their log lines in the installation's format.

Metrics: `TRAINPORT_WORKER_METRICS_PORT` on the worker's main process.

A prefork worker's tasks run in child processes, so with `PROMETHEUS_MULTIPROC_DIR` set (an
empty folder, cleared before the worker starts) each child writes its counters and histograms
there, and the endpoint, served by the parent, adds them up; a child that exits is marked dead
so its live gauges drop out. Without the variable (the threads pool, the default, and
the embedded worker: one process) the endpoint serves the process's own registry.

The platform's gauges (runs by status, queue depth, relay lag, GPUs) are read from the database
by the API's `/metrics` (core/telemetry.py), not here: one place per installation computes them.

Logs: Celery sets up its own handlers (`celery worker --loglevel=...`); once it has, they get
the context ids and the secret masking (core/process_logging.py), and with
`TRAINPORT_LOG_FORMAT=json` the JSON formatter, so a worker pod writes JSON lines only.
"""

from __future__ import annotations

import logging
import os

from celery import signals
from prometheus_client import multiprocess, start_http_server

from core import process_logging, telemetry
from core.process_logging import lifecycle
from core.settings import get_settings


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def serve_metrics(**_: object) -> None:
    port = get_settings().worker_metrics_port
    if port is not None:
        start_http_server(port, registry=telemetry.registry())
        lifecycle.info("worker metrics on :%d/metrics", port)


@signals.worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def forget_child(**_: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


@signals.after_setup_logger.connect  # type: ignore[untyped-decorator]
@signals.after_setup_task_logger.connect  # type: ignore[untyped-decorator]
def structured_celery_logs(logger: logging.Logger, **_: object) -> None:
    json_lines = get_settings().log_format == "json"
    for handler in logger.handlers:
        if json_lines:
            handler.setFormatter(process_logging.JsonFormatter())
        handler.addFilter(process_logging.ContextFilter())
        handler.addFilter(process_logging.Redact())
