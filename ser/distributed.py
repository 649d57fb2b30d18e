"""Data-parallel training and evaluation: the ranks of a torchrun launch, or one process."""

from __future__ import annotations

import gc
import os

import numpy as np
import torch


class Distributed:
    """Data-parallel context: torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; a plain run is rank 0 of 1.

    Each batch of the single-process schedule is split across the ranks (rank r takes examples r, r+W, ...), so
    the number of updates, the length buckets and the data of every epoch are those of a one-process run.
    """

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            if device.startswith("cuda"):
                local_rank = int(os.environ.get("LOCAL_RANK", "0"))
                self.device = f"cuda:{local_rank}"
                torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl" if self.device.startswith("cuda") else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def average_(self, tensors) -> None:
        """Average tensors (e.g. gradients of parameters outside DDP) over the ranks, in place."""
        if self.world > 1:
            for t in tensors:
                torch.distributed.all_reduce(t)
                t.div_(self.world)

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """The rows of ``t`` from every rank, concatenated in rank order (ranks may hold different numbers of rows).
        This rank's rows keep their gradient; the other ranks' rows are constants here."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        size = torch.tensor([t.shape[0]], device=t.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        longest = int(max(sizes))
        padded = t.new_zeros((longest, *t.shape[1:]))
        padded[: t.shape[0]] = t.detach()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        parts = [part[: int(n)] for part, n in zip(parts, sizes)]
        parts[self.rank] = t
        return torch.cat(parts)

    def sum_(self, array: np.ndarray) -> np.ndarray:
        if self.world == 1:
            return array
        t = torch.from_numpy(array).to(self.device if self.device.startswith("cuda") else "cpu")
        torch.distributed.all_reduce(t)
        return t.cpu().numpy()

    def close(self) -> None:
        if self.world > 1:
            # Free the (now unreachable) DDP wrapper first: a reducer that outlives its process group is destroyed
            # during interpreter shutdown, where gloo's threads abort the process (SIGABRT) now and then.
            gc.collect()
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
