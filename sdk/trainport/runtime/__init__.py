"""The in-run runtime: how training code talks to the platform from inside a run.

    import trainport.runtime

    run = trainport.runtime.init()
    run.log(step=step, loss=loss)
    run.checkpoints.save(state, step=step)

Importable without torch: only saving and loading checkpoint state imports it. The contract
with the platform (environment, routes, checkpoint layout) is docs/runtime-api.md.
"""

from trainport.runtime.checkpoints import Checkpoint, CheckpointCorruptError, Checkpoints
from trainport.runtime.datasets import Dataset, Datasets, DatasetVerificationError
from trainport.runtime.digests import FileEntry, tree_digest
from trainport.runtime.environment import DatasetRef, RunEnvironment, RuntimeConfigError
from trainport.runtime.metrics import MetricNameError
from trainport.runtime.run import Run, init
from trainport.runtime.serialization import UnsafeCheckpointError

__all__ = [
    "Checkpoint",
    "CheckpointCorruptError",
    "Checkpoints",
    "Dataset",
    "DatasetRef",
    "DatasetVerificationError",
    "Datasets",
    "FileEntry",
    "MetricNameError",
    "Run",
    "RunEnvironment",
    "RuntimeConfigError",
    "UnsafeCheckpointError",
    "init",
    "tree_digest",
]
