"""The worker's long-lived objects, kept out of the garbage collector's full collections.

A worker on Kubernetes holds a copy of every Job and Pod it manages (the executor's mirrors,
workers/executors/kubernetes/mirror.py): at 10,000 of them some 300,000 dicts and lists, alive
until the next list or the object's next watch event. CPython's full collection walks every
tracked object, and what an admission or reconcile pass allocates at that scale sets one off
about every pass: ~0.3 s of a ~1 s pass (bench/README.md, issue 17's scale check).

So once a mirror has (re)listed, `settle()` collects and then freezes whatever is alive
(`gc.freeze`): later collections skip it. A frozen object is still freed by reference counting
the moment nothing holds it (a replaced or deleted Job or Pod); only a reference cycle alive at
the freeze that became garbage afterwards waits, until the next settle, which unfreezes before
it collects. Mirrors re-list every `kubernetes_resync_seconds` (300 by default), so that is
how late such a cycle may be freed, and how often a full collection still runs.

Freezing is the worker process's choice (`enable()`, called as a Celery worker starts), not a
library's: anything else that runs an executor in-process (a test session, a bench) would have
everything it holds frozen too, and the engines and pools it drops (cycles) kept open until a
next settle that may never come.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_enabled = False


def enable() -> None:
    """This process is a worker: let `settle()` freeze (see the module docstring)."""
    global _enabled
    _enabled = True


def disable() -> None:
    global _enabled
    _enabled = False
    gc.unfreeze()


def settle() -> None:
    """Collect everything (what the last settle froze included), then freeze what is left;
    nothing in a process that did not `enable()` it."""
    if not _enabled:
        return
    with _lock:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
