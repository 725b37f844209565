"""The embedded workers: a Celery worker, beat and the outbox relay, in one process.

Run it beside the API with the same `TRAINPORT_*` settings (no broker URL needed: the broker is
a SQLite file under the state directory):

    python -m workers.embedded                    # migrate, then worker + beat + relay
    python -m workers.embedded --concurrency 8    # more tasks at once (threads; default 4)
    python -m workers.embedded --no-migrate       # the schema is already current

Everything runs in one process, to keep the platform small (at most 300 MB
with the API): the Celery worker (`--pool threads`) in the main thread, beat and the relay in
threads beside it. The relay runs a created run's admission pass and its launch itself, in its
thread (workers/tasks.py `publisher`), rather than through the broker and back. SIGINT or
SIGTERM is Celery's warm shutdown (bounded: see workers/shutdown.py); the relay and beat stop
once the worker has. Training processes are not children of the worker's session (each rank
runs in its own), so they survive a restart and are re-adopted.
"""

from __future__ import annotations

import argparse
import sys
import threading

from celery import signals
from celery.beat import EmbeddedService

from core import migrate, process_logging
from core.process_logging import lifecycle
from core.settings import Settings, get_settings
from workers import tasks
from workers.celery_app import app
from workers.relay import Relay

RELAY_STOP_SECONDS = 5.0


def worker_argv(settings: Settings, concurrency: int) -> list[str]:
    # Celery's banner is for the chatty levels; the lifecycle lines say the worker started.
    quiet = [] if process_logging.is_chatty(settings) else ["--quiet"]
    return [
        *quiet, "worker", "--pool", "threads", "--concurrency", str(concurrency),
        "--queues", settings.celery_queue, "--loglevel", settings.log_level,
        # Gossip, mingle and heartbeats are broadcasts the serverless broker cannot carry.
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


@signals.worker_ready.connect  # type: ignore[untyped-decorator]
def _say_ready(**_: object) -> None:
    # At the default WARNING level Celery's own "ready." line is not printed (--quiet); this
    # lifecycle line says the worker consumes, for whoever waits on the log (the benches).
    lifecycle.info("embedded workers ready")


def run(settings: Settings, concurrency: int) -> int:
    """Run the worker with beat and the relay beside it; return once the worker has stopped."""
    relay = Relay(settings, tasks.publisher(settings))
    beat = EmbeddedService(app, thread=True, schedule_filename=app.conf.beat_schedule_filename)
    relay_thread = threading.Thread(target=relay.run, name="relay", daemon=True)
    relay_thread.start()
    beat.start()
    lifecycle.info("embedded workers starting: worker, beat and outbox relay (queue %s)",
                   settings.celery_queue)  # fmt: skip
    try:
        app.worker_main(worker_argv(settings, concurrency))
    except SystemExit as exit_:
        if isinstance(exit_.code, str):  # a refusal to start, e.g. no sandbox when required
            print(exit_.code, file=sys.stderr)
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        beat.stop()
        relay.stop()
        relay_thread.join(timeout=RELAY_STOP_SECONDS)
        lifecycle.info("embedded workers stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.embedded", description=__doc__)
    parser.add_argument(
        "--concurrency", type=int, help="tasks at once (threads); TRAINPORT_WORKER_CONCURRENCY"
    )
    parser.add_argument("--no-migrate", action="store_true", help="skip the schema upgrade")
    args = parser.parse_args(argv)
    settings = get_settings()
    process_logging.configure(settings)
    if not args.no_migrate:
        migrate.upgrade(settings.database_url)
    return run(settings, args.concurrency or settings.worker_concurrency)


if __name__ == "__main__":
    sys.exit(main())
