"""core/heap.py: what a mirror lists is frozen out of full collections, and nothing leaks."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from core import heap
from workers.executors.kubernetes.mirror import Mirror


class Node:
    me: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    heap.enable()  # as a Celery worker does when it starts
    yield
    heap.disable()  # the other tests' objects stay the collector's as usual


def settled_then_dropped_cycle() -> weakref.ref[Node]:
    """A reference cycle alive at a settle, dropped after it, then a full collection."""
    cycle = Node()
    cycle.me = cycle
    gone = weakref.ref(cycle)
    heap.settle()
    del cycle
    gc.collect()
    return gone


def test_a_process_that_is_not_a_worker_freezes_nothing() -> None:
    heap.disable()
    gone = settled_then_dropped_cycle()
    assert gone() is None  # a test session or a bench running an executor keeps its collector


def test_settle_freezes_what_is_alive_and_the_next_settle_frees_a_cycle_it_froze() -> None:
    gone = settled_then_dropped_cycle()
    assert gone() is not None  # frozen: a full collection no longer walks it (the point)
    heap.settle()
    assert gone() is None  # unfrozen and collected by the next settle: never leaked for good


def test_a_mirror_s_list_is_frozen_out_of_full_collections() -> None:
    pods = [{"metadata": {"namespace": "ns", "name": f"p{i}"}, "spec": {}} for i in range(100)]
    body = json.dumps({"metadata": {"resourceVersion": "7"}, "items": pods}).encode()

    def list_pods(**_: Any) -> SimpleNamespace:  # the client's undecoded response
        return SimpleNamespace(data=body)

    mirror = Mirror(list_pods, "app=x")
    mirror.relist()
    collected = {id(obj) for obj in gc.get_objects()}  # what collections walk: not the frozen
    listed = mirror.objects()
    assert len(listed) == 100
    assert all(gc.is_tracked(pod) and id(pod) not in collected for pod in listed)


@pytest.mark.parametrize(
    "start",
    [
        "import api.main",  # what uvicorn serves
        "from workers import celery_app; celery_app._checks_at_start()",  # a worker starting
    ],
)
def test_a_service_process_freezes_its_start_up_and_spaces_out_young_collections(
    start: str,
) -> None:
    """In a process of its own: freezing here would keep the test session's garbage."""
    shown = "print(json.dumps([gc.get_threshold()[0], gc.get_freeze_count()]))"
    code = f"import gc, json\n{start}\n{shown}"
    env = {**os.environ, "TRAINPORT_DATABASE_URL": "sqlite:///:memory:", "TRAINPORT_SANDBOX": "off"}
    env["TRAINPORT_GC_YOUNG_THRESHOLD"] = "5000"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    young, frozen = json.loads(done.stdout.strip().splitlines()[-1])
    assert young == 5_000  # TRAINPORT_GC_YOUNG_THRESHOLD (CPython's own: 700)
    assert frozen > 10_000  # the imported modules' objects
