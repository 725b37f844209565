"""The `lm` recipe's data: a folder of text files as one byte stream, and its batches.

Files are read in sorted path order (binary files, those with a NUL byte in their first 8 KiB,
are skipped) and joined with blank lines; the last `eval_fraction` of the bytes is held out.
Batches are random windows drawn from a generator seeded by (seed, step, micro-batch, rank)
alone, so the data position is the step: a resumed run draws exactly the batches the
uninterrupted run would have, with no sampler state to save.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

SEPARATOR = b"\n\n"
SNIFF_BYTES = 8192
_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads nearby seeds apart


class DataError(ValueError):
    """No usable text, or too little for the context length."""


def read_corpus(root: Path, max_bytes: int = 0) -> bytes:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of text files")
    chunks: list[bytes] = []
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # .git and other hidden folders
        content = path.read_bytes()
        if b"\0" in content[:SNIFF_BYTES]:
            continue
        chunks.append(content)
        total += len(content) + len(SEPARATOR)
        if max_bytes and total >= max_bytes:
            break
    corpus = SEPARATOR.join(chunks)
    return corpus[:max_bytes] if max_bytes else corpus


@dataclass(frozen=True)
class Corpus:
    train: torch.Tensor  # uint8, 1-D
    eval: torch.Tensor

    @classmethod
    def from_bytes(cls, corpus: bytes, context: int, eval_fraction: float) -> Corpus:
        data = torch.frombuffer(bytearray(corpus), dtype=torch.uint8)
        held_out = max(context + 2, int(len(data) * eval_fraction))
        if len(data) - held_out < context + 2:
            raise DataError(
                f"{len(data)} bytes of text is too little for a context of {context} "
                f"(need at least {2 * (context + 2)})"
            )
        return cls(data[: len(data) - held_out].clone(), data[len(data) - held_out :].clone())


def window_batch(data: torch.Tensor, offsets: torch.Tensor, context: int) -> torch.Tensor:
    """`(len(offsets), context + 1)` tokens starting at each offset."""
    index = offsets[:, None] + torch.arange(context + 1)[None, :]
    return data[index].long()


def train_batch(
    corpus: Corpus, *, seed: int, step: int, micro: int, rank: int, batch: int, context: int
) -> torch.Tensor:
    mixed = (seed * _MIX + step * 1_000_003 + micro * 10_007 + rank * 101) % (2**63)
    generator = torch.Generator().manual_seed(mixed)
    offsets = torch.randint(0, len(corpus.train) - context - 1, (batch,), generator=generator)
    return window_batch(corpus.train, offsets, context)


def eval_batches(corpus: Corpus, *, count: int, batch: int, context: int) -> list[torch.Tensor]:
    """The same held-out windows every time, spread evenly over the held-out bytes."""
    last = len(corpus.eval) - context - 1
    total = count * batch
    offsets = torch.linspace(0, last, total).long()
    chunks = [offsets[i : i + batch] for i in range(0, total, batch)]
    return [window_batch(corpus.eval, chunk, context) for chunk in chunks]
