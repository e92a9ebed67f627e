"""Several processes, one result: ``torchrun --nproc-per-node N -m wssbench run ...``.

Under torchrun (``WORLD_SIZE`` > 1 in the environment) each rank segments every N-th image
of the split, the confusion matrices are summed with an all-reduce, the masks of all ranks
are gathered into one output folder and rank 0 writes the one result record. Shared work
(generating the data, training the classifier) is done by rank 0 first; the other ranks
wait and then read it from the cache. gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list) -> list:
        return items[self.rank :: self.size]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def sum(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sum over ranks (int64 or float64 arrays)."""
        if self.size == 1:
            return array
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. training and caching); the others after it."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def init(config: Any) -> tuple[World, Any]:
    """Join the process group torchrun describes, if any; returns the world and ``config`` (a
    frozen dataclass with a ``device`` field: a run's or a segmentation run's) on this rank's device."""
    world, device = _join(config.device)
    return world, config if device == config.device else dataclasses.replace(config, device=device)


def _join(device: str) -> tuple[World, str]:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    if not dist.is_initialized():
        # rank 0 may train a classifier for hours while the others wait in a barrier
        # (``main_first``); NCCL's default timeout (10 minutes) would abort them
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=timedelta(hours=12))
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return World(dist.get_rank(), dist.get_world_size()), device
