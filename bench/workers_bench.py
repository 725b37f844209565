"""The workers under measurement (issue 3). Prints numbers, never asserts.

For each backend, in one run of this script on this machine:

1. idle memory: the embedded platform as `trainport server` runs it (the API under uvicorn,
   and `python -m workers.embedded`: Celery worker, beat and the outbox relay), started and
   left idle; the RSS (and PSS, which counts shared pages once) summed over both process trees;
2. submit → running: `--latency-runs` runs one after another on the idle platform, each a
   command whose first statement writes `time.time()` to a file; latency is that stamp minus
   the wall clock just before `POST /v1/runs` (each run finishes before the next is sent);
3. a burst: `--burst` trivial runs (`python -c "print(1)"`) posted back to back; the time from
   the first POST until every one of them has succeeded;
4. idle memory again, after all that work;
5. scheduler passes over `--queued` queued runs, in this process, on a fresh database: the
   pass as the `trainport.schedule` task runs it (`workers.scheduler.run_pass`) with the local
   cluster full (nothing fits: the plan still looks at every run), and one that admits
   `--admit` runs at once.

Backends: `sqlite` is the embedded mode (SQLite database, the SQLite-file broker, no server);
`postgres` is PostgreSQL and Redis (`TRAINPORT_BENCH_ADMIN_URL`, `TRAINPORT_BENCH_REDIS_URL`).
Settings are the defaults (the local cluster has as many CPU slots as the machine has CPUs)
unless `--env NAME=VALUE` says otherwise.

    python -m bench.workers_bench                                   # both backends, ~2 min
    python -m bench.workers_bench --backend sqlite --latency-runs 10 --burst 20 --queued 1000
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from bench import servers
from core import db, migrate
from core.runs.service import create_run
from core.runs.spec import RunCreate
from core.scheduling.admission import accept_pending
from core.settings import Settings
from core.tenants.schemas import Principal, Role
from core.tenants.service import bootstrap
from workers import scheduler

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "TRAINPORT_BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TRAINPORT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PY = sys.executable
READY_TIMEOUT_S, RUN_TIMEOUT_S, IDLE_SETTLE_S = 60.0, 120.0, 3.0
# The run's first statement: the wall clock, written whole (a rename) to `path`.
STAMP_COMMAND = (
    "import time,os;t=repr(time.time());"
    "open({path!r}+'.t','w').write(t);os.rename({path!r}+'.t',{path!r})"
)
TARGETS = {"running p50 ms": 100, "burst s": 20, "pass s": 1.0, "idle MB": 300}


# -- databases -----------------------------------------------------------------------------------


def _admin(sql: str) -> None:
    dsn = make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


@contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """A fresh, migrated database for `backend`; dropped (or left in `folder`) afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / f'trainport-{secrets.token_hex(3)}.db'}"
        migrate.upgrade(url)
        yield url
        return
    name = f"trainport_wbench_{secrets.token_hex(4)}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
        yield url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bootstrap_org(url: str) -> tuple[Principal, str]:
    engine = db.build_engine(Settings(database_url=url))
    with db.session_scope(db.make_sessionmaker(engine)) as session:
        made = bootstrap(session, f"bench-{secrets.token_hex(3)}")
        caller = Principal(made.org.id, made.key.id, Role.ADMIN)
    engine.dispose()
    return caller, made.secret


# -- the embedded platform -------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    client: httpx.Client
    pids: tuple[int, ...]  # the API's and the workers' top processes
    folder: Path


def platform_env(backend: str, url: str, folder: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINPORT_")}
    env.update(
        TRAINPORT_DATABASE_URL=url,
        TRAINPORT_STATE_DIR=str(folder / "state"),
        TRAINPORT_BROKER_URL=REDIS_URL if backend == "postgres" else "",
        TRAINPORT_CELERY_QUEUE=f"bench-{secrets.token_hex(4)}",
        TRAINPORT_KEY_TOUCH_INTERVAL_SECONDS="60",
    )
    return {**env, **extra}


@contextmanager
def platform(
    backend: str, url: str, key: str, folder: Path, extra: dict[str, str]
) -> Iterator[Platform]:
    env = platform_env(backend, url, folder, extra)
    log = folder / "workers.log"
    with log.open("wb") as sink:
        workers = subprocess.Popen(
            [PY, "-m", "workers.embedded", "--no-migrate"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_log(log, "embedded workers ready", workers)
        with servers.serve("api.main:app", "/healthz", env, folder / "api.log") as api:
            headers = {"Authorization": f"Bearer {key}"}
            base = f"http://127.0.0.1:{api.port}"
            with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                yield Platform(client, (api.pid, workers.pid), folder)
    finally:
        os.killpg(workers.pid, signal.SIGTERM)
        try:
            workers.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(workers.pid, signal.SIGKILL)


def wait_for_log(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the workers did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


# -- measurements ----------------------------------------------------------------------------------


def tree_memory_mb(roots: tuple[int, ...]) -> tuple[float, float, int]:
    """RSS and PSS (MB) summed over every process under `roots`, and how many processes."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(parent, []).append(int(entry))
    todo, rss, pss, count = list(roots), 0, 0, 0
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = {line.split(":")[0]: line.split()[1] for line in rollup[1:]}
        rss, pss, count = rss + int(fields["Rss"]), pss + int(fields["Pss"]), count + 1
    return rss / 1024, pss / 1024, count


def submit(client: httpx.Client, command: list[str]) -> str:
    response = client.post("/v1/runs", json={"command": command})
    response.raise_for_status()
    run_id: str = response.json()["id"]
    return run_id


def wait_finished(client: httpx.Client, run_id: str) -> str:
    deadline, version = time.monotonic() + RUN_TIMEOUT_S, 0
    while time.monotonic() < deadline:
        response = client.get(f"/v1/runs/{run_id}", params={"wait": 1, "resource_version": version})
        run = response.json()
        if run["status"] in {"succeeded", "failed", "cancelled"}:
            return str(run["status"])
        version = run["resource_version"]
    raise RuntimeError(f"{run_id} did not finish in {RUN_TIMEOUT_S:.0f} s")


def running_latencies(plat: Platform, runs: int) -> list[float]:
    """Milliseconds from just before POST to the command's first statement, run after run."""
    stamps, found = plat.folder / "stamps", []
    stamps.mkdir()
    for index in range(runs):
        stamp = stamps / f"{index}"
        body = STAMP_COMMAND.format(path=str(stamp))
        sent = time.time()
        run_id = submit(plat.client, [PY, "-c", body])
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not stamp.exists():  # bounded poll: the command's file is the only signal
            if time.monotonic() > deadline:
                raise RuntimeError(f"{run_id} never started")
            time.sleep(0.001)
        found.append((float(stamp.read_text()) - sent) * 1000)
        wait_finished(plat.client, run_id)
    return found


def cpu_seconds(pid: int) -> float:
    """CPU the process used, plus that of its children it has reaped (shims, their commands)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def burst_seconds(plat: Platform, runs: int) -> tuple[float, dict[str, int]]:
    started = time.monotonic()
    run_ids = [submit(plat.client, [PY, "-c", "print(1)"]) for _ in range(runs)]
    outcomes: dict[str, int] = {}
    for run_id in run_ids:
        status = wait_finished(plat.client, run_id)
        outcomes[status] = outcomes.get(status, 0) + 1
    return time.monotonic() - started, outcomes


def idle_memory(plat: Platform) -> tuple[float, float, int]:
    time.sleep(IDLE_SETTLE_S)  # idle means idle: let the last tasks and processes end
    return tree_memory_mb(plat.pids)


def scheduler_passes(url: str, queued: int, admit: int) -> dict[str, Any]:
    """Seconds per `run_pass` over `queued` queued runs: full cluster (median of 5), and one
    pass that admits `admit` runs."""
    caller, _ = bootstrap_org(url)
    engine = db.build_engine(Settings(database_url=url))
    factory = db.make_sessionmaker(engine)
    body = RunCreate(command=[PY, "-c", "print(1)"])
    for start in range(0, queued, 1000):
        with db.session_scope(factory) as session:
            for _ in range(min(1000, queued - start)):
                create_run(session, caller, body)
            while accept_pending(session):
                pass
    full = Settings(database_url=url, local_cpu_slots=1)
    scheduler.run_pass(factory, full)  # takes the one slot: from now on nothing fits
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        result = scheduler.run_pass(factory, full)
        timings.append(time.perf_counter() - started)
        assert not result.admitted
    roomy = Settings(database_url=url, local_cpu_slots=admit + 1)
    started = time.perf_counter()
    admitted = len(scheduler.run_pass(factory, roomy).admitted)
    engine.dispose()
    return {
        "full cluster: pass s (median of 5)": round(statistics.median(timings), 3),
        "full cluster: pass s (max)": round(max(timings), 3),
        f"admitting {admitted}: pass s": round(time.perf_counter() - started, 3),
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(backend: str, args: argparse.Namespace, extra: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"wbench-{backend}-") as tmp:
        folder = Path(tmp)
        report: dict[str, Any] = {"backend": backend}
        with database(backend, folder) as url:
            _, key = bootstrap_org(url)
            with platform(backend, url, key, folder, extra) as plat:
                rss, pss, count = idle_memory(plat)
                report["idle after start: RSS MB / PSS MB / processes"] = (
                    round(rss),
                    round(pss),
                    count,
                )
                latencies = running_latencies(plat, args.latency_runs)
                report["submit -> running ms p50"] = round(statistics.median(latencies), 1)
                report["submit -> running ms p95"] = round(percentile(latencies, 0.95), 1)
                cpu = [cpu_seconds(pid) for pid in plat.pids]
                seconds, outcomes = burst_seconds(plat, args.burst)
                cpu = [
                    round(cpu_seconds(pid) - before, 1)
                    for pid, before in zip(plat.pids, cpu, strict=True)
                ]
                report[f"{args.burst} runs: CPU s of the API / the workers (with runs)"] = cpu
                report[f"{args.burst} runs: first submit -> all finished s"] = round(seconds, 2)
                report[f"{args.burst} runs: outcomes"] = outcomes
                rss, pss, count = idle_memory(plat)
                report["idle after the runs: RSS MB / PSS MB / processes"] = (
                    round(rss),
                    round(pss),
                    count,
                )
        with database(backend, folder) as url:
            report |= {
                f"{args.queued} queued, " + k: v
                for k, v in scheduler_passes(url, args.queued, args.admit).items()
            }
        return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--admit", type=int, default=500)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the platform")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    print(json.dumps({"machine": machine(), "targets": TARGETS, "platform env": extra}, indent=2))
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        print(json.dumps(measure(backend, args, extra), indent=2), flush=True)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory GB": round(int(memory) / 2**20, 1),
        "python": sys.version.split()[0],
    }


if __name__ == "__main__":
    main()
