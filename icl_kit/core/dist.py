"""Several processes (torchrun / accelerate launch): ranks, barriers and the few collectives used.

Training is data-parallel over groups; evaluation shards questions across ranks.

Every rank holds the same policy and sees the same batch of groups (same data order, same
sampling generator); rank r takes groups r, r+W, r+2W, ... for the LVLM calls and the
gradient. Losses are normalised by the GLOBAL number of sequences, so summing gradients
over ranks gives the one-process gradient (up to floating-point summation order).
Under `torchrun`/`accelerate launch` the group is joined from the environment (gloo on
CPU, nccl on GPU); with one process every collective is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class Ranks:
    """This process's rank among `world` training processes."""

    rank: int = 0
    world: int = 1
    created_group: bool = False

    @classmethod
    def start(cls) -> Ranks:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            backend = "nccl"
        dist.init_process_group(backend)
        return cls(dist.get_rank(), dist.get_world_size(), created_group=True)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, n: int) -> Tensor:
        """Indices of this rank's share of n items (strided)."""
        return torch.arange(self.rank, n, self.world)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum_(self, t: Tensor) -> Tensor:
        """In-place sum over ranks (a no-op alone); returns `t`."""
        if self.world > 1:
            dev = t.device
            buf = t if dist.get_backend() != "nccl" or t.is_cuda else t.cuda()
            dist.all_reduce(buf)
            if buf is not t:
                t.copy_(buf.to(dev))
        return t

    def total(self, values: list[int]) -> list[int]:
        """Sum of integer counters over ranks."""
        t = self.sum_(torch.tensor(list(values), dtype=torch.long))
        return [int(v) for v in t.tolist()]

    def sum_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Sum every gradient over ranks in one flat all-reduce (missing grads count as zeros)."""
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = self.sum_(torch.cat([g.flatten() for g in grads]))
        for p, g in zip(params, flat.split([q.numel() for q in params]), strict=True):
            p.grad = g.view_as(p).clone()

    def close(self) -> None:
        if self.created_group:
            dist.destroy_process_group()
