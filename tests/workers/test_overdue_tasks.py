"""A task past its hard time limit under the threads pool, which cannot stop it (Redis broker).

The worker does what the prefork pool does to such a task: it fails it, acknowledging its
message, so Redis never hands it to a second worker while its thread may still run; then, as
that thread is lost to it, the worker shuts down the bounded way (its other tasks requeued) and
exits non-zero for its supervisor to start a fresh one. The run still runs exactly once.

The launch is held the way test_task_redelivery.py holds it (the attempt's lock, which the test
takes); a second launch of the same attempt is sent with a 2-second hard limit in its message.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import redis

from core.outbox import Task
from core.settings import Settings
from tests.factories import create_run, make_tenant
from tests.support.launches import (
    api,
    gated_command,
    held_launch_settings,
    launch_deliveries,
    launch_held,
)
from tests.support.platforms import REDIS_URL, StartPlatform, wait_for_run
from workers.celery_app import create_celery

EXIT_TIMEOUT_S = 30.0


def _launches(queue: str) -> tuple[list[str], list[str]]:
    """Ids of the launch tasks waiting in `queue`, and of every message delivered but not
    acknowledged (kombu's `unacked` hash, shared by every queue)."""
    broker = redis.Redis.from_url(REDIS_URL)
    waiting = [json.loads(m)["headers"] for m in broker.lrange(queue, 0, -1)]
    held = [json.loads(v)[0]["headers"]["id"] for v in broker.hvals("unacked")]
    return [h["id"] for h in waiting if h["task"] == Task.LAUNCH.value], held


def test_a_task_past_its_hard_limit_is_failed_and_the_worker_restarts(
    make_database: Callable[[], str], start_platform: StartPlatform, tmp_path: Path
) -> None:
    url, queue = make_database(), f"test-{secrets.token_hex(4)}"
    state, marker, gate = tmp_path / "state", tmp_path / "pids", tmp_path / "gate"
    settings = held_launch_settings(queue, state, grace=0.5)
    sender = create_celery(Settings(broker_url=REDIS_URL, state_dir=tmp_path / "sender"))
    with api(url) as client:
        tenant = make_tenant(client)
        run = create_run(client, tenant, command=gated_command(marker, gate))
        with launch_held(state, run["id"]):
            first = start_platform(url, **settings)
            assert launch_deliveries(url, run["id"]) == 1  # its own launch waits on the lock
            overdue = sender.send_task(
                Task.LAUNCH.value, kwargs={"run_id": run["id"], "attempt": 1}, queue=queue,
                time_limit=2,
            ).id  # fmt: skip
            assert first.process.wait(timeout=EXIT_TIMEOUT_S) != 0
        assert f"{Task.LAUNCH.value}[{overdue}] ran past its hard time limit" in first.log_text()
        waiting, held = _launches(queue)
        assert overdue not in waiting + held  # failed: never handed to another worker
        assert len(waiting) == 1  # the platform's own launch, requeued by the shutdown
        start_platform(url, **settings)
        gate.touch()
        done = wait_for_run(client, tenant, run["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["status_message"]
    assert len(marker.read_text().splitlines()) == 1  # exactly one set of processes ran
