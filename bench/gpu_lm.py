"""The `lm` recipe on one GPU for about two minutes at ~100M parameters: tokens/s and MFU.

Trains the recipe's own model and training step (bf16 autocast, fused AdamW, optionally
torch.compile) on text already on the machine (the Python standard library's sources), with
an offline runtime, and prints throughput and model FLOPs utilisation measured after warm-up.
MFU counts 6N FLOPs per token for the weights plus the attention term (see
`trainport.recipes.lm.model.flops_per_token`), against the GPU's dense bf16 peak.

    python -m bench.gpu_lm                       # ~2 min, d_model 1024 x 8 layers (~102M params)
    python -m bench.gpu_lm --compile             # the same under torch.compile
    python -m bench.gpu_lm --tiny                # a few seconds on the CPU: checks it runs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import sysconfig
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402 - after the filter above

from trainport.recipes.lm.config import LMConfig  # noqa: E402
from trainport.recipes.lm.data import Corpus, read_corpus  # noqa: E402
from trainport.recipes.lm.distributed import Placement  # noqa: E402
from trainport.recipes.lm.model import parameter_count  # noqa: E402
from trainport.recipes.lm.train import Trainer  # noqa: E402
from trainport.runtime import Run, RunEnvironment  # noqa: E402

FULL = LMConfig(
    d_model=1024, n_layers=8, n_heads=16, context=1024, batch=16, steps=100_000, warmup=100,
    lr=6e-4, eval_every=0, checkpoint_every=0, sample_tokens=0,
)  # fmt: skip
TINY = LMConfig(
    d_model=64, n_layers=2, n_heads=2, context=64, batch=8, steps=100_000, warmup=10,
    eval_every=0, checkpoint_every=0, sample_tokens=0, device="cpu", threads=1,
)  # fmt: skip


def stdlib_text(max_bytes: int) -> bytes:
    return read_corpus(Path(sysconfig.get_paths()["stdlib"]), max_bytes)


def synchronize(placement: Placement) -> None:
    if placement.cuda:
        torch.cuda.synchronize(placement.device)


def measure(trainer: Trainer, seconds: float, warmup_steps: int) -> dict[str, Any]:
    """Train for `seconds` after `warmup_steps` (compilation, allocator); the numbers after."""
    placement = trainer.placement
    for _ in range(warmup_steps):
        trainer.train_step()
    synchronize(placement)
    began, steps = time.perf_counter(), 0
    losses = []
    while time.perf_counter() - began < seconds:
        loss, _ = trainer.train_step()
        steps += 1
        if steps % 20 == 0:
            losses.append(float(loss.item()))  # a sync now and then, as a logging loop would
    synchronize(placement)
    elapsed = time.perf_counter() - began
    tokens_per_s = steps * trainer.config.tokens_per_step / elapsed
    result: dict[str, Any] = {
        "steps": steps,
        "seconds": round(elapsed, 1),
        "tokens_per_s": round(tokens_per_s),
        "step_ms": round(1000 * elapsed / max(steps, 1), 2),
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)] if losses else None,
    }
    if trainer.peak:
        result["mfu"] = round(tokens_per_s * trainer.flops_per_token / trainer.peak, 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a small CPU run that checks it works")
    parser.add_argument("--seconds", type=float, help="measured seconds (default 120, tiny 5)")
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--batch", type=int, help="sequences per step")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="for unknown GPUs")
    args = parser.parse_args(argv)
    base = TINY if args.tiny else FULL
    if not args.tiny and not torch.cuda.is_available():
        print("no GPU here: run with --tiny for a CPU check", file=sys.stderr)
        return 2
    config = dataclasses.replace(
        base,
        compile=args.compile,
        batch=args.batch or base.batch,
        peak_tflops=args.peak_tflops,
    )
    seconds = args.seconds or (5.0 if args.tiny else 120.0)
    warmup = args.warmup_steps if args.warmup_steps is not None else (3 if args.tiny else 20)
    if config.threads:
        torch.set_num_threads(config.threads)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    with tempfile.TemporaryDirectory() as scratch:
        run = Run(
            RunEnvironment.from_env({"TRAINPORT_CHECKPOINT_DIR": scratch}), handle_sigterm=False
        )
        placement = Placement.start(config)
        corpus = Corpus.from_bytes(stdlib_text(64 << 20), config.context, config.eval_fraction)
        trainer = Trainer(config, run, placement, corpus)
        name = torch.cuda.get_device_name(placement.device) if placement.cuda else "cpu"
        header = {
            "device": name,
            "parameters_m": round(parameter_count(trainer.raw) / 1e6, 1),
            "tokens_per_step": config.tokens_per_step,
            "gflops_per_token": round(trainer.flops_per_token / 1e9, 3),
            "peak_tflops": round(trainer.peak / 1e12) if trainer.peak else None,
            "compile": config.compile,
            "corpus_mb": round(len(corpus.train) / 1e6, 1),
        }
        print(json.dumps(header), flush=True)
        result = measure(trainer, seconds, warmup)
        if placement.cuda:
            result["max_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
        print(json.dumps(result), flush=True)
        run.close(timeout=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
