"""Text from a trained `lm` model: what `trainport sample` and `client.runs.sample` run.

A checkpoint of the recipe holds the model's weights and the parameters it was trained with
(`config`), so its folder is all it takes: the state is read with `torch.load(weights_only=True)`
(never arbitrary unpickling, trainport/runtime/serialization.py), the model rebuilt from its
parameters, and the text sampled byte by byte on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trainport.recipes.lm.config import FIELDS, from_mapping
from trainport.recipes.lm.model import ByteLM
from trainport.runtime.serialization import read_state


class NotAnLMCheckpoint(ValueError):
    """The folder's state is not a checkpoint of the `lm` recipe."""


def load_model(folder: Path) -> ByteLM:
    """The model a checkpoint folder holds, on the CPU, ready to generate."""
    state = read_state(folder, map_location="cpu")
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise NotAnLMCheckpoint(f"{folder} holds no `lm` recipe checkpoint (model and config)")
    # Only the parameters this version knows: a newer recipe may have saved more.
    known = {k: v for k, v in state["config"].items() if k in FIELDS}
    model = ByteLM(from_mapping(known))
    model.load_state_dict(state["model"])
    return model


def generate_text(
    model: ByteLM, prompt: str, *, tokens: int, temperature: float, seed: int = 0
) -> str:
    """`prompt` and the `tokens` bytes the model writes after it (invalid UTF-8 replaced)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    written = model.generate(prompt.encode(), tokens, temperature=temperature, generator=generator)
    return prompt + written.decode("utf-8", errors="replace")


def sample_checkpoint(
    folder: Path, prompt: str, *, tokens: int = 200, temperature: float = 0.8, seed: int = 0
) -> str:
    return generate_text(
        load_model(folder), prompt, tokens=tokens, temperature=temperature, seed=seed
    )
