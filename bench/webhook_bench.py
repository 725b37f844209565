"""Webhook delivery throughput of one worker (issue 19). Prints numbers, never asserts.

A fresh, migrated PostgreSQL database; one org with `--endpoints` endpoints pointing at a local
receiver (a minimal asyncio HTTP/1.1 server in its own process that answers 204 on keep-alive
connections, so the receiver costs as little as it can); `--deliveries` pending deliveries
queued as `core.webhooks.events.queue` queues them (in one transaction per 1,000). Then the
timed part: `workers.webhooks.deliver_due` — exactly what one `trainport.deliver_webhooks`
task runs (claim a batch, sign and POST each with up to `webhook_concurrency` in flight, record
every outcome), in this one process, until nothing is due. Deliveries/s = deliveries / wall
time; every delivery is checked to have succeeded afterwards. The worker's own CPU time per
delivery (this process: claim, sign, send, record) is printed too: on a shared machine the wall
figure measures the neighbours as much as the code.

    python -m bench.webhook_bench                       # 5,000 deliveries, ~30 s
    python -m bench.webhook_bench --deliveries 20000 --concurrency 128 --batch 1000
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from core import db, migrate
from core.models import WebhookDelivery
from core.settings import Settings
from core.tenants.schemas import Principal, Role
from core.tenants.service import bootstrap
from core.webhooks import events, service
from core.webhooks.schemas import EndpointCreate, EventType
from workers.webhooks import deliver_due

ADMIN_URL = os.environ.get(
    "TRAINPORT_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
RECEIVER = """
import asyncio, sys
ANSWER = b"HTTP/1.1 204 No Content\\r\\ncontent-length: 0\\r\\n\\r\\n"
class Hook(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\\r\\n\\r\\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = 0
            for line in head.split(b"\\r\\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(self.buffer) < head_end + 4 + length:
                return
            self.buffer = self.buffer[head_end + 4 + length:]
            self.transport.write(ANSWER)
async def main():
    server = await asyncio.get_running_loop().create_server(Hook, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def _admin(sql: str) -> None:
    dsn = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


@contextmanager
def fresh_database() -> Iterator[str]:
    name = f"trainport_hbench_{secrets.token_hex(4)}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def receiver() -> Iterator[str]:
    process = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)  # the settings default
    parser.add_argument("--batch", type=int, default=256)  # the settings default
    args = parser.parse_args()
    with fresh_database() as url, receiver() as hook_url:
        settings = Settings(
            database_url=url,
            webhook_allowed_networks=["127.0.0.0/8"],
            webhook_concurrency=args.concurrency,
            webhook_batch=args.batch,
        )
        factory = db.make_sessionmaker(db.build_engine(settings))
        with db.session_scope(factory) as session:
            made = bootstrap(session, "bench")
            admin = Principal(org_id=made.org.id, key_id="key_bench", role=Role.ADMIN)
            body = EndpointCreate.model_validate({"url": hook_url})
            ids = [
                service.create_endpoint(session, admin, body, settings).id
                for _ in range(args.endpoints)
            ]
        queued = 0
        while queued < args.deliveries:
            with db.session_scope(factory) as session:
                for _ in range(min(1000, args.deliveries - queued) // len(ids) or 1):
                    data = {"run": {"id": f"run_{queued}"}, "padding": "x" * 200}
                    events.queue(session, made.org.id, ids, EventType.RUN_FINISHED, data)
                    queued += len(ids)
        started, cpu = time.perf_counter(), time.process_time()
        attempts = 0
        while True:
            sent = deliver_due(factory, settings, budget_s=600.0)
            attempts += sent
            if not sent:
                break
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        with db.session_scope(factory) as session:
            done = session.scalar(select(func.count()).where(WebhookDelivery.status == "succeeded"))
        print(
            f"deliveries: {queued}, endpoints: {len(ids)}, concurrency: {args.concurrency}, "
            f"batch: {args.batch}"
        )
        print(f"attempts: {attempts}, succeeded: {done}, wall: {elapsed:.2f} s")
        print(f"throughput: {queued / elapsed:,.0f} deliveries/s (one worker process, wall)")
        print(
            f"worker CPU: {cpu * 1e6 / queued:,.0f} us per delivery -> "
            f"{queued / cpu:,.0f} deliveries/s per fully used core"
        )


if __name__ == "__main__":
    main()
