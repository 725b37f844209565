"""`client.runs.sample`: text from the model an `lm` recipe run trained, generated here.

The checkpoint (the newest, or one step) is downloaded once into the cache
(`$TRAINPORT_CACHE_DIR/checkpoints/<run>/<step>-<COMMIT digest>/`, verified file by file
against the digests the run registered), then `trainport.recipes.lm.sample` rebuilds the model
from it and generates on the CPU. torch is imported only here, so the rest of the SDK works
without it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from trainport.errors import TrainportError
from trainport.models import Run
from trainport.runtime.digests import FileEntry
from trainport.runtime.environment import cache_dir
from trainport.training_models import Checkpoint

Sampler = Callable[..., str]


def require_lm(run: Run) -> None:
    recipe = run.spec.get("recipe")
    if recipe != "lm":
        what = f"recipe {recipe!r}" if recipe else "a command"
        raise TrainportError(
            f"Run {run.id} ({run.name}) runs {what}; sampling works for runs of the `lm` recipe."
        )


def lm_sampler() -> Sampler:
    """The recipe's sampling function (imports torch: seconds, so after the cheap checks)."""
    try:
        from trainport.recipes.lm.sample import sample_checkpoint
    except ImportError:
        raise TrainportError(
            "Sampling runs the model on this machine and needs torch: "
            "pip install 'trainport[recipes]'"
        ) from None
    return sample_checkpoint


def cache_folder(checkpoint: Checkpoint) -> Path:
    # The COMMIT digest in the name: a checkpoint saved again at the same step is fetched anew.
    name = f"{checkpoint.step}-{checkpoint.sha256[:16] or 'unsigned'}"
    return cache_dir() / "checkpoints" / checkpoint.run_id / name


def entries(checkpoint: Checkpoint) -> list[FileEntry]:
    return [FileEntry(f.path, f.size, f.sha256) for f in checkpoint.files]


def run_sampler(sampler: Sampler, folder: Path, prompt: str, **options: object) -> str:
    """Generate, with a checkpoint that cannot be read reported as an SDK error."""
    try:
        return sampler(folder, prompt, **options)
    except (ValueError, RuntimeError, KeyError) as exc:  # not an lm state; unsafe; wrong shapes
        raise TrainportError(f"Cannot sample from the checkpoint in {folder}: {exc}") from exc
