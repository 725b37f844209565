"""The Celery application. Tasks arrive with the workers issue; the settings are final now.

JSON only, no result backend, late acks with redelivery when a worker dies, prefetch 1.
"""

from __future__ import annotations

from celery import Celery

from core.settings import get_settings


def create_celery() -> Celery:
    settings = get_settings()
    app = Celery("trainport", broker=settings.broker_url or "memory://")
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": 3600},
    )
    return app


app = create_celery()
