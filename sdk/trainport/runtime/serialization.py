"""How a checkpoint's state becomes files and back: `torch.save`, read with `weights_only`.

Loading never unpickles arbitrary objects: `torch.load(weights_only=True)` accepts tensors,
numbers, strings and containers only, so a tampered or hostile checkpoint file raises instead
of running code. `.safetensors` files are read with safetensors when it is installed. torch is
imported here, on first use, so the rest of the runtime works without it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

STATE_FILE = "state.pt"
SAFETENSORS_FILE = "model.safetensors"


class UnsafeCheckpointError(Exception):
    """The checkpoint holds something other than tensors, numbers, strings and containers."""


def write_state(obj: Any, directory: Path) -> None:
    import torch

    with (directory / STATE_FILE).open("wb") as sink:
        torch.save(obj, sink)


def read_state(directory: Path, map_location: Any = "cpu") -> Any:
    import torch

    path = directory / STATE_FILE
    if not path.exists() and (directory / SAFETENSORS_FILE).exists():
        safetensors = importlib.import_module("safetensors.torch")
        return safetensors.load_file(str(directory / SAFETENSORS_FILE), device=str(map_location))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError, version-dependent
        if "weights_only" in str(exc) or "Unsupported" in str(exc):
            raise UnsafeCheckpointError(
                f"{path} holds objects that are not plain tensors and containers; refusing to "
                "unpickle it"
            ) from exc
        raise
