"""Event fan-out (issue 19): N SSE clients on one API process, one status change, delivery time.

One API process (uvicorn, as bench/servers.py runs it) on a fresh PostgreSQL database. The
client opens `--clients` streams of `GET /v1/events` (raw sockets on uvloop: the client must
not be the bottleneck) and waits until every stream has said hello (`retry:`, sent once the
stream is subscribed). Then, `--changes` times, it cancels a pending run through the API and
takes, for each stream, the time from sending the cancel to that stream receiving the
`run.status` event. Reported: p50, p95, p99 and max over all streams and changes, and the
database connections the server held while the streams were idle.

    python -m bench.sse_bench                       # 1,000 clients, 5 changes, ~30 s
    python -m bench.sse_bench --clients 200 --changes 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import uvloop

from bench import servers
from bench.seed import dsn
from bench.workers_bench import bootstrap_org, database, machine, percentile

HELLO = b"retry:"
STATUS = b"event: run.status"


class Stream:
    """One SSE client on its own socket: counts the status events it has received."""

    def __init__(self) -> None:
        self.hello = asyncio.Event()
        self.received: list[float] = []  # arrival times of run.status events
        self.arrived = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None

    async def follow(self, port: int, key: str) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        request = (
            "GET /v1/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {key}\r\n\r\n"
        )
        self.writer.write(request.encode())
        await self.writer.drain()
        buffered = b""
        while chunk := await reader.read(65536):
            now = time.perf_counter()
            buffered += chunk
            if HELLO in buffered:
                self.hello.set()
            while STATUS in buffered:
                self.received.append(now)
                self.arrived.set()
                buffered = buffered.split(STATUS, 1)[1]
            buffered = buffered[-64:]  # enough to find a marker split across reads

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def server_connections(url: str) -> int:
    with psycopg.connect(dsn(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


async def measure(port: int, key: str, url: str, clients: int, changes: int) -> dict[str, object]:
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        body = {"image": "busybox", "command": ["true"]}
        runs = [(await http.post("/v1/runs", json=body)).json()["id"] for _ in range(changes)]
        streams = [Stream() for _ in range(clients)]
        tasks = [asyncio.create_task(s.follow(port, key)) for s in streams]
        opened = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(s.hello.wait() for s in streams)), 120)
        open_s = time.perf_counter() - opened
        await asyncio.sleep(1.0)  # idle: what does the server hold now?
        idle_connections = server_connections(url)
        delays: list[float] = []
        for number, run_id in enumerate(runs, start=1):
            for s in streams:
                s.arrived.clear()
            sent = time.perf_counter()
            (await http.post(f"/v1/runs/{run_id}/cancel")).raise_for_status()
            await asyncio.wait_for(asyncio.gather(*(s.arrived.wait() for s in streams)), 60)
            delays += [(s.received[number - 1] - sent) * 1000 for s in streams]
            assert all(len(s.received) == number for s in streams)
        for s in streams:
            s.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "clients": clients,
        "changes": changes,
        "open all streams s": round(open_s, 2),
        "server DB connections while idle": idle_connections,
        "delivery ms p50": round(statistics.median(delays), 1),
        "delivery ms p95": round(percentile(delays, 0.95), 1),
        "delivery ms p99": round(percentile(delays, 0.99), 1),
        "delivery ms max": round(max(delays), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.clients)), hard))
    with (
        tempfile.TemporaryDirectory(prefix="sse-bench-") as tmp,
        database("postgres", Path(tmp)) as url,
    ):
        _, key = bootstrap_org(url)
        env = {
            "TRAINPORT_DATABASE_URL": url,
            "TRAINPORT_RATE_LIMIT_PER_KEY": "10000000/second",
            "TRAINPORT_RATE_LIMIT_PER_ORG": "10000000/second",
        }
        with servers.serve("api.main:app", "/healthz", env, Path(tmp) / "api.log") as api:
            report = uvloop.run(measure(api.port, key, url, args.clients, args.changes))
    print(json.dumps({"machine": machine(), **report}, indent=2))


if __name__ == "__main__":
    main()
