"""End to end against the floor (issue 17): Trainport beside bare Celery, in one sitting.

Prints numbers, never asserts. Platforms, one after the other on this machine, each fresh:

- **celery**: the floor. A bare Celery worker (bench/bare_celery.py: Redis broker and results,
  `--pool prefork --concurrency 4`) whose one task runs the command through `subprocess`;
- **embedded**: what `trainport server` runs (the API under uvicorn and `python -m
  workers.embedded`) on SQLite, started as bench/workers_bench.py starts it;
- **postgres**: the production processes of docker-compose.yml (API, Celery worker, beat,
  relay) on PostgreSQL + Redis, started as bench/compose_bench.py starts them.

Both Trainport platforms get 4 CPU slots (`TRAINPORT_LOCAL_CPU_SLOTS=4`, as the floor has 4
children) and otherwise their defaults; `--env NAME=VALUE` adds settings. Every run is the same
trivial command, `python -c "print(1)"` (the latency runs write a time stamp first). On each:

1. **idle memory**: RSS (and PSS) of every process of the platform, after it started and
   settled (Redis and PostgreSQL themselves are shared and not counted), in all and per
   process tree (`--idle-only`: this alone, then the next platform);
2. **submit → running**: `--latency-runs` runs one at a time; the command's first statement
   writes `time.time()`; latency = that minus the wall clock just before the submit. On
   Trainport, the **stages** of those runs are read back from the database (run, outbox rows,
   attempt) and printed as offsets from the submit (p50);
3. **`--runs` submitted one by one → all finished** (one client; its submit p50/p99);
4. **`--clients` clients x `--runs`/clients runs → all finished** (their submit p50/p99);
5. **GET one run** p50 (`--reads` GETs of random runs) and **list 400 runs** p50: pages of
   200 read with the cursor (Celery: MGET of 200 result keys a page; Trainport: `GET
   /v1/runs?limit=200&after=...`).

Then a table with both numbers and their ratio (Trainport / floor) per line, and the load
average before and after each platform (2 cores shared by others: compare ratios of one run).

    python -m bench.e2e_bench                                   # all three, ~3 min
    python -m bench.e2e_bench --only celery,embedded --runs 100 --clients 4 --latency-runs 10
    python -m bench.e2e_bench --only postgres --idle-only         # the production processes
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import select

from bench import servers
from bench.workers_bench import (
    PY,
    REDIS_URL,
    ROOT,
    STAMP_COMMAND,
    bootstrap_org,
    cpu_seconds,
    database,
    machine,
    percentile,
    platform,
    tree_memory_mb,
    wait_for_log,
)
from core import db
from core.models import OutboxMessage, Run, RunAttempt
from core.settings import Settings
from tests.deploy.test_compose_processes import (
    Stack,
    _start,
    _wait_ready,
    compose_env,
    local_argv,
    stop_services,
    trainport_services,
)

TRIVIAL = [PY, "-c", "print(1)"]
IDLE_SETTLE_S = 3.0
BETWEEN_LATENCY_RUNS_S = 0.3  # the previous run's settling pass must not overlap the next
RUN_TIMEOUT_S = 120.0
PAGE = 200
LIST_RUNS = 400


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# -- what each platform offers the measurements ------------------------------------------------


class Target:
    name: str
    pids: tuple[int, ...]

    def client(self) -> Any:
        """A client for one thread."""
        raise NotImplementedError

    def submit(self, client: Any, command: list[str]) -> str:
        raise NotImplementedError

    def wait_all(self, client: Any, ids: list[str]) -> dict[str, int]:
        raise NotImplementedError

    def get(self, client: Any, run_id: str) -> None:
        raise NotImplementedError

    def stamp_command(self, path: Path) -> list[str]:
        """A command whose first statement records the wall clock (in `path`, or its log)."""
        return [PY, "-c", STAMP_COMMAND.format(path=str(path))]

    def read_stamp(self, client: Any, run_id: str, path: Path) -> float:
        return float(path.read_text())

    def list_400(self, client: Any) -> int:
        """Read 400 runs, newest first, a page of 200 at a time; returns the pages read."""
        raise NotImplementedError


@dataclass
class Trainport(Target):
    name: str
    base: str
    key: str
    pids: tuple[int, ...]
    url: str  # the database, for the stage breakdown
    throttled: list[int] = field(default_factory=lambda: [0])

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def submit(self, client: httpx.Client, command: list[str]) -> str:
        while True:
            response = client.post("/v1/runs", json={"command": command})
            if response.status_code != 429:
                break
            self.throttled[0] += 1  # a client waits out a 429, as the SDK does
            time.sleep(float(response.headers.get("Retry-After", "0.1")))
        response.raise_for_status()
        run_id: str = response.json()["id"]
        return run_id

    def wait_all(self, client: httpx.Client, ids: list[str]) -> dict[str, int]:
        outcomes: dict[str, int] = {}
        for run_id in ids:
            deadline, version, status = time.monotonic() + RUN_TIMEOUT_S, 0, ""
            while status not in {"succeeded", "failed", "cancelled"}:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{run_id} did not finish")
                run = client.get(
                    f"/v1/runs/{run_id}", params={"wait": 1, "resource_version": version}
                ).json()
                status, version = run["status"], run["resource_version"]
            outcomes[status] = outcomes.get(status, 0) + 1
        return outcomes

    def get(self, client: httpx.Client, run_id: str) -> None:
        client.get(f"/v1/runs/{run_id}").raise_for_status()

    def stamp_command(self, path: Path) -> list[str]:
        # Printed, not written to a file: a sandboxed rank sees its own /tmp, not the bench's.
        return [PY, "-c", "import time;print(repr(time.time()),flush=True)"]

    def read_stamp(self, client: httpx.Client, run_id: str, path: Path) -> float:
        text = client.get(f"/v1/runs/{run_id}/logs").text
        return float(re.findall(r"\d{10}\.\d+", text)[-1])

    def list_400(self, client: httpx.Client) -> int:
        seen, pages, after = 0, 0, None
        while seen < LIST_RUNS:
            params: dict[str, Any] = {"limit": PAGE} | ({"after": after} if after else {})
            page = client.get("/v1/runs", params=params).json()
            seen, pages, after = seen + len(page["data"]), pages + 1, page["next_cursor"]
            if not after:
                break
        return pages


@dataclass
class BareCelery(Target):
    name: str
    queue: str
    pids: tuple[int, ...]
    ids: list[str] = field(default_factory=list)  # every task sent, newest last

    def __post_init__(self) -> None:
        os.environ["BARE_CELERY_BROKER"] = REDIS_URL
        from bench.bare_celery import app  # after the broker is set

        self.app = app
        self.lock = threading.Lock()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(REDIS_URL)

    def submit(self, client: redis.Redis, command: list[str]) -> str:
        task_id = self.app.send_task("bare.run", args=[command], queue=self.queue).id
        with self.lock:
            self.ids.append(task_id)
        return str(task_id)

    def wait_all(self, client: redis.Redis, ids: list[str]) -> dict[str, int]:
        deadline, left, outcomes = time.monotonic() + RUN_TIMEOUT_S, list(ids), {}
        while left:  # bounded poll of the result keys: how a bare Celery client learns it
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(left)} tasks did not finish")
            metas = client.mget([f"celery-task-meta-{i}" for i in left])
            done = {i: json.loads(m)["status"] for i, m in zip(left, metas, strict=True) if m}
            for status in done.values():
                outcomes[status] = outcomes.get(status, 0) + 1
            left = [i for i in left if i not in done]
            if left:
                time.sleep(0.005)
        return outcomes

    def get(self, client: redis.Redis, run_id: str) -> None:
        json.loads(client.get(f"celery-task-meta-{run_id}") or b"null")

    def list_400(self, client: redis.Redis) -> int:
        newest = self.ids[::-1][:LIST_RUNS]
        pages = 0
        for start in range(0, len(newest), PAGE):
            metas = client.mget([f"celery-task-meta-{i}" for i in newest[start : start + PAGE]])
            [json.loads(m) for m in metas if m]
            pages += 1
        return pages


# -- starting the platforms ----------------------------------------------------------------------


def slots_env(extra: dict[str, str]) -> dict[str, str]:
    # The limiter runs (its cost is in every figure) but never refuses the bench: on a quiet
    # machine its reads outran the default per-key limit (429s).
    limits = {f"TRAINPORT_RATE_LIMIT_PER_{k}": "10000000/second" for k in ("KEY", "ORG")}
    return {"TRAINPORT_LOCAL_CPU_SLOTS": "4", **limits, **extra}


@contextmanager
def start_celery(folder: Path, extra: dict[str, str]) -> Iterator[Target]:
    queue = f"bare-{uuid.uuid4().hex[:8]}"
    log = folder / "celery.log"
    env = {**os.environ, "BARE_CELERY_BROKER": REDIS_URL}
    argv = [PY, "-m", "celery", "-A", "bench.bare_celery", "worker", "--pool", "prefork",
            "--concurrency", "4", "--queues", queue, "--loglevel", "INFO", "--without-gossip",
            "--without-mingle", "--without-heartbeat"]  # fmt: skip
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_log(log, " ready.", worker)
        yield BareCelery("celery", queue, (worker.pid,))
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=30)


@contextmanager
def start_embedded(folder: Path, extra: dict[str, str]) -> Iterator[Target]:
    with database("sqlite", folder) as url:
        _, key = bootstrap_org(url)
        with platform("sqlite", url, key, folder, slots_env(extra)) as plat:
            base = str(plat.client.base_url).rstrip("/")
            yield Trainport("embedded", base, key, plat.pids, url)


@contextmanager
def start_postgres(folder: Path, extra: dict[str, str]) -> Iterator[Target]:
    with database("postgres", folder) as url:
        port, state = servers.free_port(), folder / "state"
        api_url = f"http://127.0.0.1:{port}"
        env = compose_env(url, api_url, state) | slots_env(extra)
        commands = {n: local_argv(a, port, folder) for n, a in trainport_services().items()}
        subprocess.run(commands.pop("migrate"), cwd=ROOT, env=env, check=True, timeout=120)
        started = {name: _start(name, argv, env, folder) for name, argv in commands.items()}
        try:
            _wait_ready(Stack(env, api_url, url, started))
            _, key = bootstrap_org(url)
            pids = tuple(service.process.pid for service in started.values())
            yield Trainport("postgres", api_url, key, pids, url)
        finally:
            stop_services(started, state)


STARTERS: dict[str, Callable[[Path, dict[str, str]], Any]] = {
    "celery": start_celery,
    "embedded": start_embedded,
    "postgres": start_postgres,
}


# -- measurements ---------------------------------------------------------------------------------


def latencies(target: Target, runs: int, folder: Path) -> tuple[list[float], list[dict[str, Any]]]:
    """ms from just before the submit to the command's first statement, one run at a time
    (read once the run finished);
    with each run's submit/201/stamp/finished wall clocks for the stage breakdown."""
    stamps, found, marks = folder / "stamps", [], []
    stamps.mkdir()
    client = target.client()
    for index in range(runs):
        time.sleep(BETWEEN_LATENCY_RUNS_S)
        stamp = stamps / f"{index}"
        sent = time.time()
        run_id = target.submit(client, target.stamp_command(stamp))
        answered = time.time()
        target.wait_all(client, [run_id])
        finished = time.time()
        started = target.read_stamp(client, run_id, stamp)
        found.append((started - sent) * 1000)
        marks.append({"id": run_id, "sent": sent, "201": answered, "rank started": started,
                      "client saw finished": finished})  # fmt: skip
    return found, marks


def stages(target: Trainport, marks: list[dict[str, Any]]) -> dict[str, float]:
    """p50 of each stage's time stamp, as ms after the submit, in the order of the p50s."""
    engine = db.build_engine(Settings(database_url=target.url))
    wanted = {m["id"] for m in marks}
    with db.make_sessionmaker(engine)() as session:
        runs = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(wanted)))}
        attempts = {
            a.run_id: a
            for a in session.scalars(select(RunAttempt).where(RunAttempt.run_id.in_(wanted)))
        }
        outbox: dict[tuple[str, str], OutboxMessage] = {}
        for row in session.scalars(select(OutboxMessage)):
            run_id = row.payload.get("run_id")
            if run_id in wanted:
                outbox.setdefault((row.task.rsplit(".", 1)[-1], run_id), row)
    engine.dispose()

    def ts(value: datetime | None) -> float | None:
        return value.timestamp() if value else None

    offsets: dict[str, list[float]] = {}
    for mark in marks:
        run, attempt = runs[mark["id"]], attempts.get(mark["id"])
        schedule, launch = outbox.get(("schedule", run.id)), outbox.get(("launch", run.id))
        points = {
            "201 received (client)": mark["201"],
            "API commit (run created_at)": ts(run.created_at),
            "relay published schedule (outbox sent_at)": ts(schedule.sent_at) if schedule else None,
            "admitted (attempt admitted_at)": ts(attempt.admitted_at) if attempt else None,
            "launch published (outbox sent_at)": ts(launch.sent_at) if launch else None,
            "launch returned (attempt started_at)": ts(attempt.started_at) if attempt else None,
            "rank process start (command's stamp)": mark["rank started"],
            "exit observed (attempt ended_at)": ts(attempt.ended_at) if attempt else None,
            "settled (run finished_at)": ts(run.finished_at),
            "client saw finished": mark["client saw finished"],
        }
        for name, value in points.items():
            if value is not None:
                offsets.setdefault(name, []).append((value - mark["sent"]) * 1000)
    medians = {name: round(statistics.median(v), 1) for name, v in offsets.items()}
    return dict(sorted(medians.items(), key=lambda item: item[1]))


def burst(target: Target, runs: int, clients: int) -> tuple[float, list[float], dict[str, int]]:
    """`clients` clients each submit runs/clients runs one by one, then wait for theirs."""
    per_client = runs // clients
    submits: list[float] = []
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def one_client() -> None:
        client, ids, mine = target.client(), [], []
        for _ in range(per_client):
            started = time.perf_counter()
            ids.append(target.submit(client, TRIVIAL))
            mine.append((time.perf_counter() - started) * 1000)
        done = target.wait_all(client, ids)
        with lock:
            submits.extend(mine)
            for key, count in done.items():
                outcomes[key] = outcomes.get(key, 0) + count

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(one_client) for _ in range(clients)]:
            future.result()
    return time.monotonic() - started, submits, outcomes


def reads(target: Target, count: int, ids: list[str]) -> tuple[float, float, int]:
    client = target.client()
    gets = []
    for run_id in random.choices(ids, k=count):
        started = time.perf_counter()
        target.get(client, run_id)
        gets.append((time.perf_counter() - started) * 1000)
    lists, pages = [], 0
    for _ in range(max(10, count // 20)):
        started = time.perf_counter()
        pages = target.list_400(client)
        lists.append((time.perf_counter() - started) * 1000)
    return statistics.median(gets), statistics.median(lists), pages


def measure(name: str, args: argparse.Namespace, extra: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {"load before": load()}
    with (
        tempfile.TemporaryDirectory(prefix=f"e2e-{name}-") as tmp,
        STARTERS[name](Path(tmp), extra) as target,
    ):
        time.sleep(IDLE_SETTLE_S)
        rss, pss, count = tree_memory_mb(target.pids)
        found["idle memory MB"] = round(rss)
        found["idle PSS MB / processes"] = f"{pss:.0f} / {count}"
        found["idle RSS / PSS MB by process tree"] = {
            _label(pid): "{:.0f} / {:.0f} ({} processes)".format(*tree_memory_mb((pid,)))
            for pid in target.pids
        }
        if args.idle_only:
            return found | {"load after": load()}
        lat, marks = latencies(target, args.latency_runs, Path(tmp))
        found["submit -> running ms p50"] = round(statistics.median(lat), 1)
        found["submit -> running ms p95"] = round(percentile(lat, 0.95), 1)
        if isinstance(target, Trainport):
            found["stages"] = stages(target, marks)
        cpu = {pid: tree_cpu_seconds(pid) for pid in target.pids}
        seconds, submits, outcomes = burst(target, args.runs, 1)
        found["CPU ms a run, 1 client (process tree)"] = {
            _label(pid): round((tree_cpu_seconds(pid) - before) * 1000 / args.runs, 1)
            for pid, before in cpu.items()
        }
        found[f"{args.runs} runs one by one s"] = round(seconds, 2)
        found["submit ms p50 / p99, 1 client"] = _p50_p99(submits)
        found["outcomes, 1 client"] = outcomes
        seconds, submits, outcomes = burst(target, args.runs, args.clients)
        found[f"{args.clients} clients x {args.runs // args.clients} runs s"] = round(seconds, 2)
        found[f"submit ms p50 / p99, {args.clients} clients"] = _p50_p99(submits)
        found[f"outcomes, {args.clients} clients"] = outcomes
        ids = _ids(target)
        get, listed, pages = reads(target, args.reads, ids)
        found["GET one run ms p50"] = round(get, 2)
        found[f"list {LIST_RUNS} runs ({pages} pages) ms p50"] = round(listed, 1)
        if isinstance(target, Trainport):
            found["429s waited out"] = target.throttled[0]
    found["load after"] = load()
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU used by `root` and every live process under it, each with the children it reaped
    (a rank's shim and command, once its parent waited for it)."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(parent, []).append(int(entry))
    todo, total = [root], 0.0
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _label(pid: int) -> str:
    """A process by what it runs: `uvicorn`, `workers.embedded`, `celery worker` ..."""
    argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    words = [w for w in argv[1:] if w and not w.startswith("-") and "/" not in w]
    return f"{pid} {' '.join(words[:3])}"


def _ids(target: Target) -> list[str]:
    if isinstance(target, BareCelery):
        return target.ids
    page = target.client().get("/v1/runs", params={"limit": PAGE}).json()
    return [run["id"] for run in page["data"]]


def _p50_p99(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {percentile(values, 0.99):.1f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    """One line per figure: each platform's number, and Trainport / floor."""
    names = list(results)
    header = "| figure | " + " | ".join(names) + " |"
    floor = results.get("celery")
    others = [n for n in names if n != "celery"]
    if floor:
        header += "".join(f" {n} / celery |" for n in others)
    lines = [header, "|---" * (1 + len(names) + (len(others) if floor else 0)) + "|"]
    keys = list(dict.fromkeys(k for found in results.values() for k in found))
    keys = [k for k in keys if not any(isinstance(r.get(k), dict) for r in results.values())]
    for key in keys:
        row = [str(results[n].get(key, "")) for n in names]
        line = f"| {key} | " + " | ".join(row) + " |"
        if floor:
            for name in others:
                line += f" {_ratio(results[name].get(key), floor.get(key))} |"
        lines.append(line)
    return "\n".join(lines)


def _ratio(value: Any, base: Any) -> str:
    def parts(x: Any) -> list[float]:
        try:
            return [float(p) for p in str(x).split(" / ")]
        except ValueError:
            return []

    a, b = parts(value), parts(base)
    if not a or len(a) != len(b) or any(v == 0 for v in b):
        return ""
    return " / ".join(f"{x / y:.2f}" for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="celery,embedded,postgres", help="platforms, in order")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--reads", type=int, default=200, help="GETs of one run")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for Trainport")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--idle-only", action="store_true", help="only the idle memory")
    args = parser.parse_args()
    # A SIGTERM (`timeout`) unwinds the platforms' context managers, so no process is left.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    extra = dict(item.split("=", 1) for item in args.env)
    print(json.dumps({"machine": machine(), "load": load(), "platform env": extra}, indent=2))
    results: dict[str, dict[str, Any]] = {}
    for name in args.only.split(","):
        results[name] = measure(name, args, extra)
        print(json.dumps({name: results[name]}, indent=2), flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
