"""What every process imports at start-up stays lean (issue 17: idle memory, start-up time).

Beat loads the Celery app as a worker does, but only sends tasks by name, as the relay does:
the task modules (the executors, the reconciler, webhooks' aiohttp, ...: ~35 MB) are imported
where a worker starts (`celeryd_init`), so beat holds ~90 MB instead of ~125.

boto3 and botocore cost ~24 MB and a few hundred ms in each of the API, the workers, beat and
the relay; only a store on S3 needs them, so they load on first use (core/storage/s3.py). The
workers never query through asyncpg (only the API does, on PostgreSQL: core/aio.py), so the
modules they share with the API name it for type checking only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.settings import embedded_database_url

ROOT = Path(__file__).resolve().parents[2]


def _loaded(modules: str, heavy: tuple[str, ...], state: Path) -> str:
    """The `heavy` modules a fresh process has loaded once it imported `modules`; importing
    api.main builds the app, whose SQLite database lands in `state`."""
    probe = f"import sys, {modules}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    env = {"TRAINPORT_DATABASE_URL": embedded_database_url(state), "PATH": "/usr/bin:/bin"}
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip
    return found.stdout.strip().splitlines()[-1]


def test_the_api_and_the_workers_start_without_boto3(tmp_path: Path) -> None:
    modules = "api.main, workers.tasks, workers.relay, workers.embedded"
    assert _loaded(modules, ("boto3", "botocore"), tmp_path) == "[]"


def test_the_workers_start_without_asyncpg(tmp_path: Path) -> None:
    workers = "workers.tasks, workers.relay, workers.embedded"
    assert _loaded(workers, ("asyncpg",), tmp_path) == "[]"


def test_beat_loads_the_celery_app_without_the_tasks() -> None:
    """What `celery -A workers.celery_app beat` imports before it starts: the app module, then
    its loader's default modules (a worker's `include`s and `imports`)."""
    heavy = ("workers.tasks", "workers.reconciler", "workers.executors.local", "aiohttp")
    probe = (
        "import sys, workers.celery_app as c; c.app.loader.import_default_modules();"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {"TRAINPORT_DATABASE_URL": "sqlite:///unused.db", "PATH": "/usr/bin:/bin"}
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True, timeout=120,
    )  # fmt: skip
    assert found.stdout.strip().splitlines()[-1] == "[]"


def test_a_ranks_shim_starts_without_dataclasses_or_typing() -> None:
    """The shim runs once per rank start (`python -S -m workers.executors.local_shim`):
    dataclasses (which imports inspect) and typing were ~10 ms of CPU of each start."""
    probe = (
        "import sys, workers.executors.local_shim;"
        "print(sorted(m for m in ('dataclasses', 'inspect', 'typing') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=ROOT, env={"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert found.stdout.strip() == "[]"
