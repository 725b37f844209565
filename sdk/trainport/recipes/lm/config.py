"""The `lm` recipe's parameters: defaults, and how they are read.

Parameters come from `TRAINPORT_PARAMETERS` (a JSON object: the run spec's `parameters`), then
command-line flags (`--d-model 256` or `--d_model=256`), later ones winning. Unknown names are an
error that lists the known ones, so a typo fails at once rather than training the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ParameterError(ValueError):
    """A parameter the recipe does not know, or a value of the wrong type or range."""


@dataclass(frozen=True)
class LMConfig:
    # model
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    context: int = 128
    # optimisation
    batch: int = 16  # sequences per micro-batch, per rank
    grad_accum: int = 1
    steps: int = 200
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    # data
    data: str = ""  # a folder of text files; else `dataset`; else the only pinned dataset
    dataset: str = ""
    eval_fraction: float = 0.05
    max_bytes: int = 0  # read at most this many bytes of text (0: all)
    # cadence
    eval_every: int = 50
    eval_batches: int = 4
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    log_every: int = 1
    print_every: int = 0  # 0: about 20 lines per run
    # the end
    sample_tokens: int = 200
    sample_prompt: str = ""
    temperature: float = 0.8
    # hardware
    device: str = "auto"  # auto, cpu, cuda
    threads: int = 0  # torch CPU threads (0: torch's default)
    compile: bool = False
    peak_tflops: float = 0.0  # for MFU on unknown GPUs (0: from the GPU's name)

    def __post_init__(self) -> None:
        positive = ("d_model", "n_layers", "n_heads", "context", "batch", "grad_accum", "steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be at least 1")
        if self.d_model % self.n_heads:
            raise ParameterError("d_model must be divisible by n_heads")
        if not 0 < self.eval_fraction < 1:
            raise ParameterError("eval_fraction must be between 0 and 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ParameterError("device must be auto, cpu or cuda")

    @property
    def tokens_per_step(self) -> int:
        """Tokens one rank processes per optimiser step."""
        return self.batch * self.context * self.grad_accum

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(LMConfig)}


def _coerce(name: str, value: Any) -> Any:
    kind = type(getattr(LMConfig(), name))
    if kind is bool:
        if isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ParameterError(f"{name} must be true or false, not {value!r}")
            return value.lower() in ("1", "true", "yes")
        return bool(value)
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be {kind.__name__}, not {value!r}") from None


def from_mapping(values: Mapping[str, Any], base: LMConfig | None = None) -> LMConfig:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}"
        )
    coerced = {name: _coerce(name, value) for name, value in values.items()}
    return dataclasses.replace(base or LMConfig(), **coerced)


def parse_flags(argv: Sequence[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m trainport.recipes.lm",
        description="Train a byte-level transformer language model on a folder of text.",
    )
    for name, field in FIELDS.items():
        flags = dict.fromkeys(["--" + name.replace("_", "-"), f"--{name}"])
        parser.add_argument(*flags, dest=name, default=None, help=f"default {field.default!r}")
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def load(argv: Sequence[str], env: Mapping[str, str] | None = None) -> LMConfig:
    """TRAINPORT_PARAMETERS, then flags."""
    env = os.environ if env is None else env
    raw = env.get("TRAINPORT_PARAMETERS", "").strip()
    try:
        document = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ParameterError(f"TRAINPORT_PARAMETERS is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ParameterError("TRAINPORT_PARAMETERS must be a JSON object")
    return from_mapping(parse_flags(argv), from_mapping(document))
