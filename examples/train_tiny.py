"""A real, tiny PyTorch training run for the demo: fit a small MLP to a noisy sine on the CPU.

It needs nothing downloaded: the data is generated. It reads the platform's environment
(TRAINPORT_RUN_ID, TRAINPORT_ATTEMPT, TRAINPORT_CHECKPOINT_DIR) when run by Trainport and works
the same on a laptop. A checkpoint is saved at the end, and resumed from on a retry.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from pathlib import Path

# The CPU wheel works without NumPy and says so on import; this script never needs NumPy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402 - after the filter above
from torch import nn  # noqa: E402


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=generator) * 2 * math.pi
    y = torch.sin(x) + 0.05 * torch.randn(n, 1, generator=generator)
    return x, y


def main() -> int:
    steps = int(os.environ.get("STEPS", "300"))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = nn.Sequential(
        nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    checkpoint_dir = Path(os.environ.get("TRAINPORT_CHECKPOINT_DIR", ".checkpoints"))
    checkpoint = checkpoint_dir / "model.pt"
    start_step = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        start_step = int(state["step"])
        print(f"resumed from step {start_step}", flush=True)
    x, y = make_data(2048)
    run = os.environ.get("TRAINPORT_RUN_ID", "local")
    print(
        f"run {run} attempt {os.environ.get('TRAINPORT_ATTEMPT', '0')}: {steps} steps", flush=True
    )
    began = time.monotonic()
    for step in range(start_step, steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.5f}", flush=True)
    with torch.no_grad():
        loss = nn.functional.mse_loss(model(x), y)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "step": steps}, checkpoint)
    print(f"done in {time.monotonic() - began:.1f}s, final loss {loss.item():.5f}", flush=True)
    return 0 if loss.item() < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
