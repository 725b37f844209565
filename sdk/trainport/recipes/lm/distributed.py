"""Where the `lm` recipe runs: the device, and DDP through torch.distributed when
WORLD_SIZE > 1 (gloo on CPU, nccl on GPU; MASTER_ADDR / MASTER_PORT from the environment, as
the platform's executors and torchrun set them)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trainport.recipes.lm.config import LMConfig


@dataclass(frozen=True)
class Placement:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @classmethod
    def start(cls, config: LMConfig) -> Placement:
        rank = int(os.environ.get("RANK", "0"))
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        wants_cuda = config.device == "cuda" or (
            config.device == "auto" and torch.cuda.is_available()
        )
        if wants_cuda:
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device("cpu")
        if world_size > 1 and not dist.is_initialized():
            backend = "nccl" if wants_cuda else "gloo"
            dist.init_process_group(backend, rank=rank, world_size=world_size)
        return cls(rank, world_size, local_rank, device)

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over every rank (a collective: every rank must call it)."""
        if self.distributed:
            value = value.detach().clone().float()
            dist.all_reduce(value)
            value /= self.world_size
        return float(value.item())

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any: ranks agree on when to stop."""
        if not self.distributed:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item() > 0)

    def broadcast(self, value: int) -> int:
        """Rank 0's value, on every rank."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            # Every rank arrives before any tears down: rank 0 hosts the rendezvous store, and
            # a rank still using it when rank 0 exits aborts ("terminate called ...").
            dist.barrier()
            dist.destroy_process_group()
