"""The embedded workers: a Celery worker, beat and the outbox relay in one process tree.

Run it beside the API with the same `TRAINPORT_*` settings (no broker URL needed: the broker is
a SQLite file under the state directory):

    python -m workers.embedded                    # migrate, then worker + beat + relay
    python -m workers.embedded --concurrency 8    # more tasks at once (threads)
    python -m workers.embedded --no-migrate       # the schema is already current

The main process runs the relay (outbox → broker) in a thread and supervises one child:
`celery worker --pool threads --beat` (beat as its own small process). SIGINT or SIGTERM stops
the relay and gives the worker a warm shutdown. Training processes are not children of the
worker (each rank runs in its own session), so they survive a restart and are re-adopted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading

from core import migrate
from core.settings import Settings, get_settings
from workers.celery_app import app
from workers.relay import Relay, celery_publisher

SHUTDOWN_SECONDS = 30.0
log = logging.getLogger("trainport.embedded")


def worker_command(settings: Settings, concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
        "--pool", "threads", "--concurrency", str(concurrency), "--beat",
        "--queues", settings.celery_queue, "--loglevel", settings.log_level.upper(),
        # Gossip, mingle and heartbeats are broadcasts the serverless broker cannot carry.
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip


def run(settings: Settings, concurrency: int) -> int:
    """Start the worker and the relay; return once the worker exits or a signal asks to stop."""
    stop = threading.Event()
    worker = subprocess.Popen(worker_command(settings, concurrency))  # noqa: S603 - our own argv
    relay = Relay(settings, celery_publisher(app))

    def watch_worker() -> None:
        worker.wait()
        stop.set()

    threads = [
        threading.Thread(target=relay.run, name="relay", daemon=True),
        threading.Thread(target=watch_worker, name="watch-worker", daemon=True),
    ]
    for thread in threads:
        thread.start()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    relay.stop()
    _shut_down(worker)
    threads[0].join(timeout=5)
    return worker.returncode or 0


def _shut_down(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown: finish the current task
        try:
            worker.wait(timeout=SHUTDOWN_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.embedded", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=4, help="tasks at once (threads)")
    parser.add_argument("--no-migrate", action="store_true", help="skip the schema upgrade")
    args = parser.parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    if not args.no_migrate:
        migrate.upgrade(settings.database_url)
    log.info("embedded workers starting (queue %s)", settings.celery_queue)
    return run(settings, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
