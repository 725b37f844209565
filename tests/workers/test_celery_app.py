"""The Celery app's delivery guarantees, read from the configured app itself."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import workers.tasks  # noqa: F401 - registers the tasks on the app
from core.outbox import Task
from core.settings import Settings, WorkerPool
from workers.brokers import RedisTransport
from workers.celery_app import VISIBILITY_TIMEOUT, app, create_celery


def test_the_app_delivers_json_at_least_once_one_message_at_a_time() -> None:
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.result_backend is None
    assert conf.task_ignore_result is True
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1


def test_redis_visibility_timeout_outlasts_every_task(tmp_path: Path) -> None:
    redis_app = create_celery(Settings(broker_url="redis://127.0.0.1:6379/0", state_dir=tmp_path))
    assert redis_app.conf.broker_url == "redis://127.0.0.1:6379/0"
    visibility = redis_app.conf.broker_transport_options["visibility_timeout"]
    assert visibility == VISIBILITY_TIMEOUT
    ours = [app.tasks[task.value] for task in Task]
    assert len(ours) == len(Task)  # every outbox task has a worker task
    for task in ours:
        assert task.time_limit is not None, task.name
        assert task.time_limit < visibility, task.name
    assert app.conf.task_time_limit < visibility


def test_the_worker_pool_and_its_size_are_settings(tmp_path: Path) -> None:
    default = create_celery(Settings(state_dir=tmp_path))
    assert (default.conf.worker_pool, default.conf.worker_concurrency) == ("threads", 4)
    chosen = Settings(state_dir=tmp_path, worker_pool=WorkerPool.PREFORK, worker_concurrency=2)
    prefork = create_celery(chosen)
    assert (prefork.conf.worker_pool, prefork.conf.worker_concurrency) == ("prefork", 2)


def test_every_beat_entry_expires() -> None:
    schedule = app.conf.beat_schedule
    assert {entry["task"] for entry in schedule.values()} >= {Task.RECONCILE, Task.SCHEDULE}
    for name, entry in schedule.items():
        assert 0 < entry["options"]["expires"] <= max(entry["schedule"], 600), name


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")  # kombu's own models
def test_without_a_broker_url_messages_travel_through_a_sqlite_file(tmp_path: Path) -> None:
    embedded = create_celery(Settings(broker_url="", state_dir=tmp_path))
    assert embedded.conf.broker_url == f"sqlite:///{(tmp_path / 'broker.db').resolve()}"
    with embedded.connection_for_write() as connection:
        assert connection.transport.polling_interval <= 0.1
        queue = connection.SimpleQueue("round-trip")
        queue.put({"run_id": "run_x"})
        message = queue.get(timeout=5)
        message.ack()
        queue.close()
    assert message.payload == {"run_id": "run_x"}
    assert (tmp_path / "broker.db").exists()


@pytest.mark.parametrize(
    ("url", "verified_tls"), [("redis://127.0.0.1:6379/0", False), ("rediss://broker:6380/0", True)]
)
def test_redis_brokers_use_the_transport_that_survives_a_lost_connection(
    tmp_path: Path, url: str, verified_tls: bool
) -> None:
    redis_app = create_celery(Settings(broker_url=url, state_dir=tmp_path))
    with redis_app.connection_for_write() as connection:
        assert isinstance(connection.transport, RedisTransport)
        assert (connection.hostname, connection.port) == (
            urlsplit(url).hostname,
            urlsplit(url).port,
        )
        # Naming the transport drops kombu's rediss default (TLS, certificates unchecked).
        assert connection.ssl == ({"ssl_cert_reqs": ssl.CERT_REQUIRED} if verified_tls else False)
