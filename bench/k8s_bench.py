"""Kubernetes executor benchmarks on the fake API server (tests/k8s/fake_api.py).

1. Absorb: 10 000 pods (5 000 two-node attempts) change status; how long until the executor's
   watch has applied every change and `observe()` classifies them all.
2. API calls per live run per minute: requests the executor makes while runs are live and
   `observe()` is called every second (watches and log follows, never per-pod polls).
3. Memory of the mirrors holding the 10 000 pods (tracemalloc).

Usage: .venv/bin/python -m bench.k8s_bench [--pods 10000] [--minutes 0.25]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.kubernetes import naming  # noqa: E402
from core.kubernetes.config import ClusterConfig  # noqa: E402
from core.logs import LogStore  # noqa: E402
from tests.k8s.fake_api import FakeApiServer  # noqa: E402
from tests.support.kubernetes import make_apis  # noqa: E402
from workers.executors.kubernetes.executor import KubernetesExecutor  # noqa: E402

NS = "trainport-runs"


def make_pods(server: FakeApiServer, count: int) -> list[str]:
    names = []
    with server.store.changed:
        for i in range(count):
            run_id, index = f"run_{i // 2:026d}", i % 2
            labels = naming.attempt_labels(run_id, "org_b", "", 1, ClusterConfig().installation)
            annotations = {naming.RUN_ID_KEY: run_id, naming.COMPLETION_INDEX_KEY: str(index)}
            meta = {"name": f"p{i}", "labels": labels, "annotations": annotations}
            server.store.create("pods", NS, {"metadata": meta, "spec": {"nodeName": f"n{i % 64}"}})
            names.append(f"p{i}")
    return names


def absorb(server: FakeApiServer, executor: KubernetesExecutor, names: list[str]) -> float:
    started = time.perf_counter()
    with server.store.changed:
        for name in names:
            server.store.patch("pods", NS, name, {"status": {"phase": "Running"}})
        target = str(server.store.version)
    executor.pods.wait_for(lambda: executor.pods.resource_version == target, 120)
    observed = executor.observe()
    assert sum(len(o.ranks) for o in observed) == len(names)
    return time.perf_counter() - started


def calls_per_run_minute(
    server: FakeApiServer, executor: KubernetesExecutor, minutes: float, runs: int
) -> float:
    before = sum(server.store.requests.values())
    deadline = time.monotonic() + minutes * 60
    while time.monotonic() < deadline:
        executor.observe()
        executor.pods.wait_for(lambda: False, 1.0)
    return (sum(server.store.requests.values()) - before) / runs / minutes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=0.25)
    args = parser.parse_args()
    with FakeApiServer() as server, tempfile.TemporaryDirectory() as folder:
        names = make_pods(server, args.pods)
        tracemalloc.start()
        executor = KubernetesExecutor(
            make_apis(server.url, watch_timeout=60), ClusterConfig(namespace=NS),
            LogStore(Path(folder) / "logs"), Path(folder) / "state",
        )  # fmt: skip
        executor.start()
        memory = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        seconds = absorb(server, executor, names)
        print(f"absorb {len(names)} pod status changes: {seconds:.2f} s")
        print(f"mirror memory for {len(names)} pods (peak, list): {memory:.1f} MiB")
        rate = calls_per_run_minute(server, executor, args.minutes, len(names) // 2)
        print(f"API calls per live run per minute: {rate:.4f}")
        executor.stop()


if __name__ == "__main__":
    main()
