"""torch.distributed helpers and the resumable, rank-sharded sampler.

Under `torchrun` the usual env vars (RANK, WORLD_SIZE, LOCAL_RANK) are set; we use gloo on CPU and
NCCL on CUDA. Without them everything degrades to a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun; a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (identity in a single process)."""
    if not info.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / info.world_size


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's `obj`, in rank order."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


class ShardedEpochSampler(torch.utils.data.Sampler):
    """Indices of one epoch for one rank, starting at a given batch (for exact resume).

    Epoch `e` is a permutation seeded by `seed + e`, identical on every rank. Rank r takes positions
    r, r + world, r + 2*world, ... so that at every step the ranks together see the same global batch a
    single process with `batch_size * world_size` would see. Each rank gets
    `(len(data) // world_size) // batch_size` full batches; the remainder of the shuffled epoch
    (different examples each epoch) is left out so that all ranks step together.
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        epoch: int,
        seed: int,
        info: DistInfo,
        shuffle: bool = True,
        start_batch: int = 0,
    ) -> None:
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.epoch = epoch
        self.seed = seed
        self.info = info
        self.shuffle = shuffle
        self.start_batch = start_batch

    @staticmethod
    def batches_per_epoch(num_examples: int, batch_size: int, world_size: int) -> int:
        return (num_examples // world_size) // batch_size

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_examples, generator=g)
        else:
            order = torch.arange(self.num_examples)
        per_rank = self.num_examples // self.info.world_size
        mine = order[: per_rank * self.info.world_size][self.info.rank :: self.info.world_size]
        n_batches = self.batches_per_epoch(self.num_examples, self.batch_size, self.info.world_size)
        mine = mine[self.start_batch * self.batch_size : n_batches * self.batch_size]
        return iter(mine.tolist())

    def __len__(self) -> int:
        n_batches = self.batches_per_epoch(self.num_examples, self.batch_size, self.info.world_size)
        return max(0, n_batches - self.start_batch) * self.batch_size
