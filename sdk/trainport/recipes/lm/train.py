"""The `lm` recipe's training loop: resume, train, evaluate, checkpoint, stop on SIGTERM, sample.

Every `checkpoint_every` steps rank 0 saves the model, the optimizer, the step (which is also
the data position, see `data`) and the RNG states; a new attempt loads the latest complete
checkpoint and continues exactly where it left off, so a run killed at any point loses at most
one checkpoint interval and ends with the weights an uninterrupted run would have had (on CPU,
bit for bit; on GPU up to the usual non-determinism of fused kernels). On SIGTERM every rank
agrees to stop after the current step, rank 0 saves, and the process exits with 143.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import trainport.runtime
from trainport.recipes.lm import config as parameters
from trainport.recipes.lm.config import LMConfig, ParameterError
from trainport.recipes.lm.data import Corpus, DataError, eval_batches, read_corpus, train_batch
from trainport.recipes.lm.distributed import Placement
from trainport.recipes.lm.model import ByteLM, flops_per_token, parameter_count, peak_flops
from trainport.recipes.lm.sample import generate_text
from trainport.runtime import Run

EXIT_STOPPED = 143  # 128 + SIGTERM: stopped early, on request, after saving


def learning_rate(config: LMConfig, step: int) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to `min_lr_ratio * lr`."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * progress))


def data_folder(run: Run, config: LMConfig) -> Path:
    if config.data:
        return Path(config.data).expanduser()
    if config.dataset:
        return run.datasets[config.dataset].path
    if len(run.datasets) == 1:
        return next(iter(run.datasets.values())).path
    raise DataError("no data: give `data` (a folder of text) or `dataset` (a pinned dataset)")


def rng_state(placement: Placement) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if placement.cuda:
        state["cuda"] = torch.cuda.get_rng_state(placement.device)
    return state


def restore_rng(state: dict[str, Any], placement: Placement) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if placement.cuda and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], placement.device)


class Trainer:
    def __init__(self, config: LMConfig, run: Run, placement: Placement, corpus: Corpus) -> None:
        self.config, self.run, self.placement, self.corpus = config, run, placement, corpus
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.raw = ByteLM(config).to(placement.device)
        model: nn.Module = self.raw
        if placement.distributed:
            ids = [placement.local_rank] if placement.cuda else None
            model = DistributedDataParallel(self.raw, device_ids=ids)
        self.model: Any = torch.compile(model) if config.compile else model
        self.optimizer = self._optimizer()
        self.step = 0
        self.latest: dict[str, float] = {}  # the newest loss and eval_loss, kept with checkpoints
        self.flops_per_token = flops_per_token(self.raw, config)
        name = torch.cuda.get_device_name(placement.device) if placement.cuda else ""
        self.peak = peak_flops(name, config.peak_tflops) if placement.cuda else None

    def _optimizer(self) -> torch.optim.Optimizer:
        decay = [p for p in self.raw.parameters() if p.dim() >= 2]
        other = [p for p in self.raw.parameters() if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": other, "weight_decay": 0.0},
        ]
        fused = {"fused": True} if self.placement.cuda else {}
        return torch.optim.AdamW(groups, lr=self.config.lr, betas=(0.9, 0.95), **fused)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.placement.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- checkpoints ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "model": self.raw.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "data": {"position": self.step, "seed": self.config.seed},
            "rng": rng_state(self.placement),
            "config": self.config.to_dict(),
        }

    def save(self) -> None:
        if self.placement.is_main:
            self.run.checkpoints.save(self.state(), step=self.step, metrics=self.latest)

    def resume(self) -> None:
        """Continue from the newest complete checkpoint rank 0 sees, if there is one."""
        latest = self.run.checkpoints.latest() if self.placement.is_main else None
        step = self.placement.broadcast(latest.step if latest else -1)
        if step < 0:
            return
        state = self.run.checkpoints.load(step, map_location=self.placement.device)
        self.raw.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_rng(state["rng"], self.placement)
        self.step = int(state["step"])
        say(self.placement, f"resumed from step {self.step} ({self.run.checkpoints.uri})")

    # -- training -------------------------------------------------------------------------------

    def micro_batches(self, step: int) -> Iterator[tuple[int, torch.Tensor]]:
        for micro in range(self.config.grad_accum):
            tokens = train_batch(
                self.corpus,
                seed=self.config.seed,
                step=step,
                micro=micro,
                rank=self.placement.rank,
                batch=self.config.batch,
                context=self.config.context,
            )
            yield micro, tokens.to(self.placement.device, non_blocking=True)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        lr = learning_rate(self.config, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.placement.device)
        for micro, tokens in self.micro_batches(self.step):
            last = micro == self.config.grad_accum - 1
            skip_sync = self.placement.distributed and not last
            with self.model.no_sync() if skip_sync else contextlib.nullcontext():
                with self.autocast():
                    loss = self.model(tokens[:, :-1], tokens[:, 1:]) / self.config.grad_accum
                loss.backward()
            total += loss.detach()
        norm = nn.utils.clip_grad_norm_(self.raw.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total, norm

    @torch.no_grad()
    def evaluate(self) -> float:
        self.raw.eval()
        batches = eval_batches(
            self.corpus,
            count=self.config.eval_batches,
            batch=self.config.batch,
            context=self.config.context,
        )
        losses = []
        for tokens in batches:
            tokens = tokens.to(self.placement.device)
            with self.autocast():
                losses.append(float(self.raw(tokens[:, :-1], tokens[:, 1:]).item()))
        self.raw.train()
        return sum(losses) / len(losses)

    def train(self) -> int:
        """Train to `steps`; EXIT_STOPPED when SIGTERM cut it short (after saving)."""
        config, placement = self.config, self.placement
        print_every = config.print_every or max(1, config.steps // 20)
        meter = Throughput(config.tokens_per_step * placement.world_size)
        while self.step < config.steps:
            loss, norm = self.train_step()
            meter.add_step()
            step = self.step
            if step % config.log_every == 0 or step == config.steps:
                self.report(step, placement.mean(loss), float(norm), meter, print_every)
            paused = time.perf_counter()  # evaluation and saving are not training throughput
            if config.eval_every and (step % config.eval_every == 0 or step == config.steps):
                self.report_eval(step)
            if placement.any(self.run.should_stop()):
                self.save()
                say(placement, f"stopping at step {step} on request; checkpoint saved")
                return EXIT_STOPPED
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                self.save()
            meter.exclude(time.perf_counter() - paused)
        if self.step % max(1, config.checkpoint_every) or not config.checkpoint_every:
            self.save()
        return 0

    def report(
        self, step: int, loss: float, norm: float, meter: Throughput, print_every: int
    ) -> None:
        tokens_per_s = meter.rate()
        values = {"loss": loss, "lr": learning_rate(self.config, step - 1), "grad_norm": norm}
        values["tokens_per_s"] = tokens_per_s
        if self.peak:
            per_gpu = tokens_per_s / self.placement.world_size
            values["mfu"] = per_gpu * self.flops_per_token / self.peak
        self.run.log(step=step, **values)
        self.run.progress(step, self.config.steps)
        self.latest["loss"] = round(loss, 4)
        if step % print_every == 0 or step == self.config.steps:
            mfu = f"  mfu {values['mfu']:.1%}" if "mfu" in values else ""
            say(
                self.placement,
                f"step {step}/{self.config.steps}  loss {loss:.4f}  lr {values['lr']:.2e}  "
                f"{tokens_per_s:,.0f} tok/s{mfu}",
            )

    def report_eval(self, step: int) -> None:
        if not self.placement.is_main:
            return
        eval_loss = self.evaluate()
        self.run.log(step=step, eval_loss=eval_loss)
        self.latest["eval_loss"] = round(eval_loss, 4)
        say(self.placement, f"step {step}/{self.config.steps}  eval_loss {eval_loss:.4f}")

    def sample(self) -> str:
        config = self.config
        with self.autocast():
            return generate_text(
                self.raw,
                config.sample_prompt,
                tokens=config.sample_tokens,
                temperature=config.temperature,
                seed=config.seed,
            )

    def fingerprint(self) -> str:
        """The weights summed two ways: equal on every rank when DDP kept them in step."""
        flat = torch.cat([p.detach().double().flatten() for p in self.raw.parameters()])
        return f"{flat.sum().item():.12e} {flat.square().sum().item():.12e}"


class Throughput:
    """Tokens per second since the previous reading."""

    def __init__(self, tokens_per_step: int) -> None:
        self.tokens_per_step = tokens_per_step
        self.steps = 0
        self.since = time.perf_counter()

    def add_step(self) -> None:
        self.steps += 1

    def exclude(self, seconds: float) -> None:
        self.since += seconds

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.steps * self.tokens_per_step / max(now - self.since, 1e-9)
        self.steps, self.since = 0, now
        return rate


def say(placement: Placement, message: str) -> None:
    if placement.is_main:
        print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parameters.load(sys.argv[1:] if argv is None else argv)
    except ParameterError as exc:
        print(f"lm: {exc}", file=sys.stderr)
        return 2
    if config.threads:
        torch.set_num_threads(config.threads)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    run = trainport.runtime.init(keep_checkpoints=config.keep_checkpoints)
    placement = Placement.start(config)
    try:
        return _train(config, run, placement)
    except DataError as exc:
        print(f"lm: {exc}", file=sys.stderr)
        return 2
    finally:
        placement.close()
        run.close()


def _train(config: LMConfig, run: Run, placement: Placement) -> int:
    folder = data_folder(run, config)
    corpus = Corpus.from_bytes(
        read_corpus(folder, config.max_bytes), config.context, config.eval_fraction
    )
    trainer = Trainer(config, run, placement, corpus)
    say(
        placement,
        f"lm: {parameter_count(trainer.raw) / 1e6:.2f}M parameters, {len(corpus.train):,} "
        f"training bytes from {folder}, {placement.world_size} x {placement.device}, run {run.id}",
    )
    trainer.resume()
    code = trainer.train()
    if placement.distributed:  # every rank prints it: equal sums mean DDP kept them in step
        print(
            f"rank {placement.rank} weights checksum {trainer.fingerprint()} "
            "(sum and sum of squares of every weight; equal on every rank)",
            flush=True,
        )
    if code == 0 and placement.is_main and config.sample_tokens:
        print(f"--- sample ---\n{trainer.sample()}\n--- end of sample ---", flush=True)
    return code
