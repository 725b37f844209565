"""Where runs execute: the executor kinds a cluster row names, and the local cluster's name.

Below every domain folder, so that runs (a spec's warnings), scheduling (admission) and
provenance can name them without importing one another; workers/executors/ implements them.
"""

from __future__ import annotations

from enum import StrEnum


class ExecutorKind(StrEnum):
    LOCAL = "local"  # commands run as host processes (workers/executors/local.py)
    KUBERNETES = "kubernetes"  # Jobs on a registered cluster (workers/executors/kubernetes/)


LOCAL_CLUSTER = "local"  # the name of the one cluster the local executor serves
