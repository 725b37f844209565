"""Scale on the fake cluster (issue 17): 10,000 runs in flight over 1,000 nodes.

Target: an admission pass at most 1 s, a reconcile pass at most 1 s, and the API's p99 at most
50 ms while they run. Prints numbers, never asserts.

The setup, on a database of its own (`trainport_bench_scale`: dropped and recreated, then kept for
`--reuse`, which rebuilds the fake cluster from its open attempts, with the same `--nodes`):

- bench/seed.py's set-based rows, `--runs` x 2 runs over 20 orgs; the newest `--runs` are made
  `pending`, each asking for one of the GPU shapes in SHAPES (1 x 1 H100 for most, up to 2 x 8),
  the older half stays finished history;
- the fake Kubernetes API server of tests/k8s (fake_api.py), in a process of its own so that
  serving it takes no time from the passes, with `--nodes` nodes of 8 GPUs each;
- the real scheduler (`workers.scheduler.run_pass`: the cluster registered from its nodes,
  pending runs accepted 1,000 a pass, then admitted) until a pass changes nothing: as many runs
  as fit are `starting`, with their attempts, node placements and launch tasks, the rest queued;
- each open attempt's Job and pods (one per node of its placement, `Running`) created on the
  fake server as the Job controller and the kubelets would (the launches themselves are not
  what is measured: bench/k8s_real_bench.py times those), then the reconciler's passes until
  none changes anything (the first moves every `starting` run to `running`): timed, printed,
  a catch-up rather than the steady state.

Measured, on that steady state:

1. `--passes` admission passes (`scheduler.run_pass`; the first also lists the nodes again, as
   one pass a minute does) and as many reconcile passes (`reconcile.reconcile_once`: observe
   through the executor's mirrors, then every active run compared), alternately: the wall time
   and the CPU time of the thread running them;
2. the API (uvicorn, one process, as bench/servers.py starts it) on the same database: `GET
   /v1/runs/{id}` of random in-flight runs and `GET /v1/runs?limit=50`, one request at a time
   from a process of its own (bench/loadgen.py), first with nothing else running, then while
   the passes run back to back in this process: p50 and p99;
3. with `--profile`, one admission and one reconcile pass under cProfile (top functions).

    python -m bench.scale_bench                          # ~6 min on 2 busy cores
    python -m bench.scale_bench --reuse --profile        # the last database again: ~2 min
    python -m bench.scale_bench --runs 2000 --nodes 200 --passes 3
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg
import yaml
from sqlalchemy import func, select

from bench import loadgen, seed, servers
from bench.workers_bench import machine
from core import db, heap, migrate
from core.models import Run, RunAttempt
from core.settings import Settings
from workers import scheduler
from workers.clusters import forget_inventory_reads
from workers.executors.kubernetes.executor import KubernetesExecutor
from workers.executors.registry import Where, executor_for
from workers.reconciler import WorkerContext, reconcile_once
from workers.tasks import RECONCILE_BUDGET_SECONDS

DATABASE = "trainport_bench_scale"
NAMESPACE = "trainport-runs"
INSTALLATION = "scale-bench"
GPU_TYPE = "h100"
GPUS_PER_NODE = 8
# (nodes, GPUs a node, share in %) of the in-flight runs: mostly single-GPU jobs, a few gangs.
SHAPES = ((1, 1, 75), (1, 2, 15), (1, 4, 6), (1, 8, 3), (2, 8, 1))
BATCH = 500  # attempts sent to the fake server at a time
API_REQUESTS = 400  # per kind of request, per measurement

PENDING = """
WITH newest AS (
    SELECT id, row_number() OVER (ORDER BY id DESC) AS n FROM runs ORDER BY id DESC LIMIT %(runs)s
), shaped AS (
    SELECT id, CASE WHEN n %% 100 < 75 THEN 1 WHEN n %% 100 < 99 THEN 1 ELSE 2 END AS nodes,
           CASE WHEN n %% 100 < 75 THEN 1 WHEN n %% 100 < 90 THEN 2 WHEN n %% 100 < 96 THEN 4
                ELSE 8 END AS gpus
    FROM newest
)
UPDATE runs SET status = 'pending', status_reason = 'submitted', attempt = 0, queued_at = NULL,
                started_at = NULL, finished_at = NULL,
                spec = (runs.spec - 'data') || jsonb_build_object('compute',
                    (runs.spec -> 'compute') || jsonb_build_object('nodes', shaped.nodes,
                    'gpus_per_node', shaped.gpus, 'gpu_type', %(gpu_type)s::text))
FROM shaped WHERE runs.id = shaped.id
"""
HISTORY = """
UPDATE runs SET status = 'succeeded', status_reason = 'completed',
                finished_at = coalesce(finished_at, created_at + interval '1 hour')
WHERE status IN ('queued', 'starting', 'running', 'stopping')
"""


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# -- the fake cluster, in a process of its own ---------------------------------------------------


def node_object(index: int) -> dict[str, Any]:
    """A Ready node with 8 GPUs, as tests/k8s/cluster.py's `add_node` makes one."""
    return {
        "metadata": {"name": f"node-{index:04d}", "labels": {"nvidia.com/gpu.product": GPU_TYPE}},
        "spec": {"unschedulable": False},
        "status": {
            "allocatable": {"cpu": "96", "nvidia.com/gpu": str(GPUS_PER_NODE)},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def attempt_objects(store: Any, attempt: dict[str, Any]) -> None:
    """An admitted attempt's Indexed Job and its pods, Running on the nodes of its placement."""
    from core.kubernetes import naming
    from core.kubernetes.manifests import CONTAINER

    run_id, number, nodes = attempt["run_id"], attempt["attempt"], attempt["nodes"]
    name = naming.attempt_name(run_id, number)
    labels = naming.attempt_labels(
        run_id, attempt["org_id"], attempt["project_id"], number, INSTALLATION
    )
    annotations = {naming.RUN_ID_KEY: run_id}
    env = [{"name": f"TRAINPORT_VAR_{i}", "value": f"value-{i}"} for i in range(16)]
    container = {"name": CONTAINER, "image": "ghcr.io/acme/trainer:1.4", "env": env}
    job = store.create("jobs", NAMESPACE, {
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"completions": len(nodes), "parallelism": len(nodes),
                 "completionMode": "Indexed", "backoffLimit": 0,
                 "template": {"metadata": {"labels": labels, "annotations": annotations},
                              "spec": {"containers": [container]}}},
        "status": {"active": len(nodes)},
    })  # fmt: skip
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name,
             "uid": job["metadata"]["uid"], "controller": True}  # fmt: skip
    for index, node in enumerate(nodes):
        rank = {naming.COMPLETION_INDEX_KEY: str(index)}
        running = {"name": CONTAINER, "state": {"running": {"startedAt": "2026-12-04T00:00:00Z"}},
                   "imageID": "ghcr.io/acme/trainer@sha256:" + "0" * 64}  # fmt: skip
        store.create("pods", NAMESPACE, {
            "metadata": {"name": f"{name}-{index}-x", "labels": {**labels, **rank},
                         "annotations": {**annotations, **rank}, "ownerReferences": [owner]},
            "spec": {"nodeName": node, "hostname": f"{name}-{index}", "containers": [container]},
            "status": {"phase": "Running", "containerStatuses": [running]},
        })  # fmt: skip


def serve_cluster(nodes: int, orders: Connection) -> None:
    """The fake API server with `nodes` nodes; each list received adds those attempts' objects,
    None stops it. Runs in a spawned process."""
    from tests.k8s.fake_api import FakeApiServer

    with FakeApiServer() as server:
        with server.store.changed:
            for index in range(nodes):
                server.store.create("nodes", "", node_object(index))
        orders.send(server.url)
        while (attempts := orders.recv()) is not None:
            with server.store.changed:
                for attempt in attempts:
                    attempt_objects(server.store, attempt)
            orders.send(len(attempts))


@contextmanager
def fake_cluster(nodes: int) -> Iterator[tuple[str, Connection]]:
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=serve_cluster, args=(nodes, theirs), daemon=True
    )
    process.start()
    try:
        yield ours.recv(), ours
    finally:
        ours.send(None)
        process.join(timeout=30)


# -- the platform's state --------------------------------------------------------------------------


def prepare_database(runs: int) -> tuple[str, str, str]:
    """The database, seeded: its URL, the measured org's id and an admin key of it."""
    url = seed.recreate_database(DATABASE)
    migrate.upgrade(url)
    tenants = seed._tenants(url)
    seed._fill(url, runs * 2, tenants)
    with psycopg.connect(seed.dsn(url), autocommit=True) as conn:
        conn.execute(PENDING, {"runs": runs, "gpu_type": GPU_TYPE})
        conn.execute(HISTORY)  # the seed's active runs beyond the newest `runs`
        conn.execute("VACUUM ANALYZE")
    return url, tenants.org_id, tenants.api_key


def settings_for(url: str, cluster_url: str, folder: Path) -> Settings:
    kubeconfig = folder / "main.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "main",
        "clusters": [{"name": "main", "cluster": {"server": cluster_url}}],
        "users": [{"name": "main", "user": {"token": "bench"}}],
        "contexts": [{"name": "main", "context": {"cluster": "main", "user": "main"}}],
    }))  # fmt: skip
    return Settings(
        database_url=url,
        state_dir=folder / "state",
        local_cluster=False,
        installation_id=INSTALLATION,
        kubernetes_namespace=NAMESPACE,
        kubernetes_clusters={"main": {"kubeconfig": str(kubeconfig)}},
    )


def admit_everything(ctx: WorkerContext) -> dict[str, Any]:
    """Scheduler passes until one changes nothing: what fits is admitted, the rest queued."""
    passes, slowest, admitted = 0, (0.0, 0), 0
    while True:
        started = time.perf_counter()
        result = scheduler.run_pass(ctx.factory, ctx.settings)
        took = time.perf_counter() - started
        passes, admitted = passes + 1, admitted + len(result.admitted)
        slowest = max(slowest, (took, len(result.admitted)))
        if not result.accepted and not result.admitted:
            break
    with psycopg.connect(seed.dsn(ctx.settings.database_url), autocommit=True) as conn:
        conn.execute("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")  # no broker here
    return {
        "setup scheduler passes": passes,
        "runs admitted": admitted,
        "slowest setup pass s (runs it admitted)": f"{slowest[0]:.2f} ({slowest[1]})",
    }


def launch_everything(ctx: WorkerContext, orders: Connection) -> int:
    """Every open attempt's Job and pods on the fake cluster; how many attempts."""
    with db.session_scope(ctx.factory) as session:
        rows = session.execute(
            select(RunAttempt.run_id, RunAttempt.attempt, RunAttempt.org_id,
                   RunAttempt.project_id, RunAttempt.placement)
            .where(RunAttempt.ended_at.is_(None))
        ).all()  # fmt: skip
    attempts = [
        {"run_id": r[0], "attempt": r[1], "org_id": r[2], "project_id": r[3], "nodes": _nodes(r[4])}
        for r in rows
    ]
    for start in range(0, len(attempts), BATCH):
        orders.send(attempts[start : start + BATCH])
        orders.recv()
    return len(attempts)


def _nodes(placement: dict[str, int] | None) -> list[str]:
    return [node for node, gpus in sorted((placement or {}).items()) if gpus]


def catch_up(ctx: WorkerContext) -> dict[str, Any]:
    """Reconcile passes until one settles and marks nothing (the executor's mirrors first fill)."""
    started = time.perf_counter()
    executor = ctx.executors(Where("main", "kubernetes"))
    executor.observe()  # starts the mirrors: the first list of every Job and pod
    listed = time.perf_counter() - started
    took, running = [], 0
    while True:
        before = _count(ctx, "running")
        begun = time.perf_counter()
        # As the reconcile task runs it: out of time after RECONCILE_BUDGET_SECONDS.
        summary = reconcile_once(ctx, time.monotonic() + RECONCILE_BUDGET_SECONDS)
        took.append(time.perf_counter() - begun)
        running = _count(ctx, "running")
        if running == before and not (summary.settled or summary.orphans or summary.deferred):
            break
    return {
        "mirrors' first list s": round(listed, 2),
        "catch-up reconcile passes s": [round(t, 2) for t in took],
        "runs running": running,
        "runs queued": _count(ctx, "queued"),
    }


def _count(ctx: WorkerContext, status: str) -> int:
    with db.session_scope(ctx.factory) as session:
        return int(session.scalar(select(func.count()).where(Run.status == status)) or 0)


# -- the measurements ------------------------------------------------------------------------------


def timed(step: Callable[[], Any]) -> tuple[float, float]:
    """Wall and thread CPU milliseconds of one call."""
    wall, cpu = time.perf_counter(), time.thread_time()
    step()
    return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


def admission(ctx: WorkerContext) -> Callable[[], Any]:
    return lambda: scheduler.run_pass(ctx.factory, ctx.settings)


def reconcile(ctx: WorkerContext) -> Callable[[], Any]:
    return lambda: reconcile_once(ctx)


def passes(ctx: WorkerContext, count: int) -> dict[str, Any]:
    forget_inventory_reads()  # the first admission pass lists the nodes, as one a minute does
    with_nodes = timed(admission(ctx))
    admit = [timed(admission(ctx)) for _ in range(count)]
    recon = [timed(reconcile(ctx)) for _ in range(count)]
    return {
        "admission pass with the node listing ms (wall / CPU)": _pair(with_nodes),
        **_summary("admission pass", admit),
        **_summary("reconcile pass", recon),
    }


def _pair(value: tuple[float, float]) -> str:
    return f"{value[0]:.0f} / {value[1]:.0f}"


def _summary(name: str, found: list[tuple[float, float]]) -> dict[str, str]:
    walls, cpus = [w for w, _ in found], [c for _, c in found]
    return {
        f"{name} ms median / max (wall)": f"{statistics.median(walls):.0f} / {max(walls):.0f}",
        f"{name} ms median / max (CPU)": f"{statistics.median(cpus):.0f} / {max(cpus):.0f}",
    }


def api_latency(port: int, key: str, run_ids: list[str], count: int) -> dict[str, str]:
    """p50 / p99 of one run's GET and of a page of the list, one request at a time (run in a
    process of its own, so the client never waits for this process's passes)."""
    headers = {"Authorization": f"Bearer {key}"}
    gets = [loadgen.Request("GET", f"/v1/runs/{run_id}", headers) for run_id in run_ids]
    lists = [loadgen.Request("GET", "/v1/runs?limit=50", headers)]
    one = loadgen.sequential(port, gets, count)
    page = loadgen.sequential(port, lists, count)
    return {
        "GET one run ms p50 / p99": f"{one.p50_ms:.1f} / {one.p99_ms:.1f}",
        "list 50 runs ms p50 / p99": f"{page.p50_ms:.1f} / {page.p99_ms:.1f}",
    }


def api_under_passes(ctx: WorkerContext, org_id: str, key: str, folder: Path) -> dict[str, Any]:
    in_flight = Run.status.in_(["queued", "running"]) & (Run.org_id == org_id)
    with db.session_scope(ctx.factory) as session:
        ids = list(session.scalars(select(Run.id).where(in_flight)))
    url = ctx.settings.database_url
    env = {"TRAINPORT_DATABASE_URL": url, "TRAINPORT_RATE_LIMIT_ENABLED": "false"}
    ids = random.Random(17).sample(ids, min(200, len(ids)))
    spawn = multiprocessing.get_context("spawn")
    with (
        servers.serve("api.main:app", "/healthz", env, folder / "api.log") as api,
        ProcessPoolExecutor(1, mp_context=spawn) as client,
    ):
        client.submit(api_latency, api.port, key, ids, 20).result()  # warm: both processes
        idle = client.submit(api_latency, api.port, key, ids, API_REQUESTS).result()
        measuring = client.submit(api_latency, api.port, key, ids, API_REQUESTS)
        found: list[tuple[float, float]] = []
        while not measuring.done():
            found.append(timed(admission(ctx) if len(found) % 2 == 0 else reconcile(ctx)))
        busy = measuring.result()
    return {
        "API, nothing else running": idle,
        "API, while the passes run": busy,
        "passes run meanwhile (admission and reconcile alternately)": len(found),
        **_summary("a pass under API load", found),
    }


def profile(ctx: WorkerContext) -> str:
    out = io.StringIO()
    for name, step in (("admission", admission(ctx)), ("reconcile", reconcile(ctx))):
        profiler = cProfile.Profile()
        profiler.runcall(step)
        out.write(f"--- one {name} pass, top 25 by cumulative time\n")
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10_000, help="runs in flight")
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--passes", type=int, default=10, help="of each kind")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="the last run's database as it is")
    args = parser.parse_args()
    heap.enable()  # the passes run here as in a Celery worker, which enables it at start
    report: dict[str, Any] = {"machine": machine(), "load at the start": load()}
    started = time.perf_counter()
    if args.reuse:
        url = seed.database_url(DATABASE)
        org_id, key = seed.measured_org_key(url, "scale-bench")
    else:
        url, org_id, key = prepare_database(args.runs)
    with (
        tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp,
        fake_cluster(args.nodes) as (cluster_url, orders),
    ):
        settings = settings_for(url, cluster_url, Path(tmp))
        factory = db.make_sessionmaker(db.build_engine(settings))
        ctx = WorkerContext(factory, settings, lambda where: executor_for(where, settings))
        if not args.reuse:
            report |= admit_everything(ctx)
        report["attempts on the fake cluster"] = launch_everything(ctx, orders)
        report |= catch_up(ctx)
        report["setup s"] = round(time.perf_counter() - started, 1)
        report["load before the passes"] = load()
        report |= passes(ctx, args.passes)
        report["load before the API"] = load()
        report |= api_under_passes(ctx, org_id, key, Path(tmp))
        report["load at the end"] = load()
        print(json.dumps(report, indent=2), flush=True)
        if args.profile:
            print(profile(ctx))
        executor = executor_for(Where("main", "kubernetes"), settings)
        if isinstance(executor, KubernetesExecutor):
            executor.stop()  # its mirrors' watch threads


if __name__ == "__main__":
    main()
