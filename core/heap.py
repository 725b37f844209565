"""What Trainport's long-running processes keep out of the garbage collector's way.

**At start-up** (`start_up()`: the API, a Celery worker, the relay). CPython runs a young
collection every 700 net container allocations, and now and then a full one, which walks every
live object. A service process holds ~130,000 long-lived objects once imported (SQLAlchemy's
and pydantic's schemas, the app) and allocates thousands of dicts in one request: a 200-run
page set off about ten young collections and at times a full one, about a tenth of its time
(issue 17). So, once the imports are done, what exists is frozen (`gc.freeze`: never scanned
again; in a prefork parent, not written to by its children's collections, so its pages stay
shared) and young collections run every `TRAINPORT_GC_YOUNG_THRESHOLD` (20,000) allocations.
Cycles are still found and freed, in larger batches.

**In a Kubernetes worker** (`enable()`, then `settle()`). It holds a copy of every Job and Pod it
manages (the executor's mirrors, workers/executors/kubernetes/mirror.py): at 10,000 of them some
300,000 dicts and lists, alive until the next list or the object's next watch event. What an
admission or reconcile pass allocates at that scale set off a full collection about every pass:
~0.3 s of a ~1 s pass (bench/README.md, issue 17's scale check).

So once a mirror has (re)listed, `settle()` collects and then freezes whatever is alive
(`gc.freeze`): later collections skip it. A frozen object is still freed by reference counting
the moment nothing holds it (a replaced or deleted Job or Pod); only a reference cycle alive at
the freeze that became garbage afterwards waits, until the next settle, which unfreezes before
it collects. Mirrors re-list every `kubernetes_resync_seconds` (300 by default), so that is
how late such a cycle may be freed, and how often a full collection still runs.

Both are the process's choice, made in its entry point, not a library's: anything else that
runs this code in-process (a test session, a bench) would have everything it holds frozen too,
and the engines and pools it drops (cycles) kept until a next settle that may never come.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_enabled = False


def start_up(young_threshold: int) -> None:
    """Freeze what start-up made, and run a young collection every `young_threshold` net
    allocations (`TRAINPORT_GC_YOUNG_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


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
