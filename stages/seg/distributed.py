"""Multi-process training (DistributedDataParallel) as ``torchrun`` starts it, and the same calls
as no-ops in a single process, so the trainer has one code path.

``torchrun --nproc-per-node N`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; each process
then trains on its share of every global batch, on ``cuda:LOCAL_RANK`` with NCCL or on the CPU
with gloo (how the tests run it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, the resume state and the log."""
        return self.rank == 0

    def share(self, batch: list[int]) -> list[int]:
        """This process's part of a global batch (its size divides by the world size)."""
        per = len(batch) // self.size
        return batch[self.rank * per : (self.rank + 1) * per]

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a stop signal, say)."""
        return self.flags(flag)[0]

    def flags(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on every process when it is true on one, in one exchange."""
        if self.size == 1:
            return tuple(bool(f) for f in flags)
        t = torch.tensor([1.0 if f else 0.0 for f in flags], device=self._device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in t.tolist())

    def mean(self, value: float) -> float:
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._device)
        dist.all_reduce(t)
        return t.item() / self.size

    def gather(self, obj) -> list:
        """Every process's ``obj``, in rank order (on every process)."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    _device: torch.device = torch.device("cpu")


def start(device: torch.device) -> tuple[World, torch.device]:
    """The world this process is part of (one process without torchrun) and its device: with
    several processes on CUDA, ``cuda:LOCAL_RANK``."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    world._device = device
    return world, device


def stop(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
