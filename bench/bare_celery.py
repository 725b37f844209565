"""The floor of bench/e2e_bench.py: bare Celery on Redis, one task that runs a command.

Nothing on top: no durable run record, no admission, no logs, no re-adoption. The task runs
the command through `subprocess` and returns its exit code to the Redis result backend, which
is how a client of bare Celery learns that a task finished (and what "GET one run" reads).

    celery -A bench.bare_celery worker --pool prefork --concurrency 4 --queues Q

`BARE_CELERY_BROKER` is the Redis URL (broker and results).
"""

from __future__ import annotations

import os
import subprocess

from celery import Celery

BROKER = os.environ.get("BARE_CELERY_BROKER", "redis://127.0.0.1:6379/0")

app = Celery("bare", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    result_expires=3600,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)


@app.task(name="bare.run")
def run(command: list[str]) -> int:
    return subprocess.run(command, check=False).returncode
