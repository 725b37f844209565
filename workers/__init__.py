"""Background work: the Celery app, its tasks, the scheduler and the executors."""
